"""``steerlab validate``: run a causal validation suite; PASS / FAIL / INCONCLUSIVE / NOT-TESTABLE per claim."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .common import Progress, check_out, cli, echo_json, get_vectors_and_model, model_options, say


@cli.command("validate")
@click.argument("suite_path", metavar="SUITE")
@click.option(
    "--prompts", "prompts_path", default=None, help="Replace the suite's prompts (JSONL with 'text', or one per line)."
)
@click.option("--n", "n", type=click.IntRange(1), default=None, help="Use at most N prompts (stratified by label).")
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the suite's, else the shipped one)."
)
@model_options
@click.option("--out", default=None, help="Output folder (default: runs/validate/<suite name>).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out folder's result files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the verdicts.")
@click.option("--strict", is_flag=True, help="Exit 1 when any claim is not PASS.")
@click.option(
    "--unvalidated-reader",
    is_flag=True,
    help="Run with a reader never validated on this model's judged replies (every verdict says so).",
)
def validate_cmd(
    suite_path: str,
    prompts_path: str | None,
    n: int | None,
    vectors_path: str | None,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    out: str | None,
    force: bool,
    as_json: bool,
    strict: bool,
    unvalidated_reader: bool,
) -> None:
    """Run SUITE (YAML): intervene, generate, re-read the replies with the clean model, judge the claims."""
    from ..files import existing_file
    from ..validate.prompts import suite_prompts
    from ..validate.schema import load_suite
    from ..validate.spec import OUTPUT_FILES

    # Everything that needs no model is checked before torch is imported.
    start = time.perf_counter()
    suite = load_suite(suite_path)
    suite_prompts(suite, prompts_path, n)
    target = Path(out) if out else Path("runs") / "validate" / suite.name
    check_out(target, "--out", directory=True)
    for name in OUTPUT_FILES:
        check_out(target / name, "--out", force=force)
    # Another --model than the suite's reads its own (shipped) vectors unless --vectors names a file.
    other_model = model_spec is not None and model_spec != suite.model
    vectors_path = vectors_path or (None if other_model else suite.vectors)
    if vectors_path:
        existing_file(vectors_path, "vector file", "run `steerlab extract` or pass --vectors FILE.safetensors")

    from ..validate import RunOptions, run_suite, summary, write_outputs
    from ..validate.outputs import validation_line

    vectors, lm = get_vectors_and_model(vectors_path, model_spec or suite.model, revision, dtype)
    options = RunOptions(prompts=prompts_path, n=n, unvalidated_reader=unvalidated_reader)
    with Progress(0, f"validate {suite.name}", unit="reply") as bar:
        result = run_suite(suite, lm, vectors, options, bar.update)
    from ..parallel import is_main

    if not is_main():
        return  # under torchrun every rank ran the whole suite; rank 0 writes and prints
    written = write_outputs(result, target)
    summ = summary(result)
    say(
        f"{summ['n']} prompts x {len(result.conditions)} conditions in {time.perf_counter() - start:.0f}s "
        f"(suite {result.seconds:.0f}s); wrote {target}/ ({', '.join(p.name for p in written)})"
    )
    if as_json:
        echo_json({k: summ[k] for k in ("suite", "n", "reader", "premises", "claims", "conditions", "warnings")})
    else:
        click.echo(
            f"reader {summ['reader']['name']} at layer {summ['reader']['layer']}: "
            f"{validation_line(summ['reader']['validation'])}"
        )
        for row in result.quality:
            flag = f"DEGENERATE ({row['why']})" if row["degenerate"] else ""
            click.echo(
                f"{row['name']:34} |dx| {row['displacement']:7.1f}  ppl x{row['ppl_ratio']:5.2f}  "
                f"echo {row['echo_rate']:4.0%}  looping {row['degenerate_replies']:4.0%}  "
                f"incoherent {row['incoherent']:4.0%}  {flag}"
            )
        for c in result.claims:
            click.echo(
                f"{c['verdict'].upper():13} {c['name']}: effect {c['effect']:+.4f} "
                f"[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]  {c['p_family']} p={c['p']:.3g} p_adj={c['p_adj']:.3g}  "
                f"power {c['power']:.2f}  n={c['n']}"
            )
            for reason in c["reasons"] if c["verdict"] != "pass" else []:
                click.echo(f"{'':13} why: {reason}")
    for warning in result.warnings:
        say(f"warning: {warning}")
    if result.note:
        say(f"note: {result.note}")
    if strict and any(c["verdict"] != "pass" for c in result.claims):
        sys.exit(1)
