"""``steerlab fit-reader``: every reader validated on the model's own judged replies; the reply reader refitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from steerlab.cli.common import check_out, cli, echo_json, get_model, get_vectors, model_options, say, vector_meta
from steerlab.core.errors import SteerlabError


@cli.command("fit-reader")
@click.option("--vectors", "vectors_path", required=True, help="A vector file from `steerlab extract`.")
@click.option(
    "--judged",
    "judged_paths",
    required=True,
    multiple=True,
    help="The model's own replies judged blind (JSONL: user, reply, label, hopeful, desperate, calm 1-5); repeatable.",
)
@click.option("--replies", "replies_path", default=None, help="Written labelled replies (default: the built-in ones).")
@click.option("--heldout", "heldout_path", default=None, help="Written replies to other messages, for a second figure.")
@click.option("--out", required=True, help="The new vector file (.safetensors); --force to overwrite.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file (it may be --vectors itself).")
@click.option("--report", "report_path", default=None, help="Also write the validation record to this JSON file.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split by user message.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the validation record as one JSON object.")
def fit_reader_cmd(
    vectors_path: str,
    judged_paths: tuple[str, ...],
    replies_path: str | None,
    heldout_path: str | None,
    out: str,
    force: bool,
    report_path: str | None,
    seed: int,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    as_json: bool,
) -> None:
    """Validate every reader on the model's own replies judged blind, choose the default reader on them,
    and refit the reply reader on written and judged replies together (one emotion per judged label;
    replies judged incoherent teach it what is not to be read)."""
    import json

    from steerlab.core.corpus import BUILTIN_REPLIES, load_corpus
    from steerlab.core.files import atomic_write

    target = _check_outputs(out, report_path, force)
    vector_meta(vectors_path, None)  # before torch: a missing or broken file answers at once
    written = load_corpus(replies_path, min_per_emotion=1, builtin=BUILTIN_REPLIES)
    heldout = load_corpus(heldout_path, min_per_emotion=1) if heldout_path else None

    from steerlab.core.vectors import save_vectors
    from steerlab.read.gate import refresh_gates
    from steerlab.read.judged import fit_on_judged, load_judged

    v = get_vectors(vectors_path, None)
    judged = load_judged(judged_paths, v.emotions)
    lm = get_model(model_spec or v.meta.get("model_spec"), revision, dtype)
    v.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    fitted, record = fit_on_judged(lm, v, written, judged, seed=seed, heldout=heldout, note=say)
    fitted = refresh_gates(lm, fitted, note=say)  # thresholds are in the units of the reader just refitted
    save_vectors(fitted, target)
    if report_path:
        atomic_write(Path(report_path), lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    if as_json:
        echo_json(record)
        return
    _print_record(record, target)


def _check_outputs(out: str, report_path: str | None, force: bool) -> Path:
    """--out (a new vector file) and --report, checked writable before any work; returns --out."""
    target = Path(out)
    if target.suffix != ".safetensors":
        raise SteerlabError(f"--out {str(target)!r} must end in .safetensors")
    check_out(target, "--out", force=force)
    if report_path:
        if Path(report_path).resolve() == target.with_suffix(".json").resolve():
            raise SteerlabError(f"--report {report_path!r} is the vector file's own .json: choose another --report")
        check_out(Path(report_path), "--report", force=True)
    return target


def _print_record(record: dict[str, Any], target: Path) -> None:
    def num(x: float | None, spec: str = ".3f") -> str:
        return "–" if x is None else format(x, spec)

    click.echo(f"on {record['test_replies']} judged replies to {record['test_messages']} held-out messages:")
    for name, f in record["readers"].items():
        scales = "  ".join(
            f"{s} ρ {num(f[f'spearman_{s}'], '+.3f')} AUROC>=3 {num(f[f'auroc_{s}_3plus'])}"
            for s in ("hopeful", "desperate")
        )
        click.echo(f"  {name:26} macro AUROC {num(f['macro_auroc'])}  {scales}")
    ceiling = record.get("tie_ceiling") or {}
    click.echo(
        f"  (the most any score without ties can reach on these replies: hopeful ρ "
        f"{num(ceiling.get('hopeful'), '+.3f')}, desperate ρ {num(ceiling.get('desperate'), '+.3f')})"
    )
    inc = record["incoherence"]["rule"]
    click.echo(f"  incoherent replies caught: recall {inc['recall']:.2f}, precision {inc['precision']:.2f}")
    click.echo(f"default reader: {record['chosen']}; wrote {target}")
