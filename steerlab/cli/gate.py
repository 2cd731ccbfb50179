"""``steerlab calibrate-gate``: add calibrated gate thresholds to an existing vector file."""

from __future__ import annotations

from pathlib import Path

import click

from steerlab.cli.common import check_out, cli, echo_json, get_model, get_vectors, model_options, say
from steerlab.core.errors import SteerlabError


@cli.command("calibrate-gate")
@click.option("--vectors", "vectors_path", required=True, help="A vector file from `steerlab extract`.")
@click.option(
    "--messages",
    "messages_path",
    default=None,
    help="Labelled user messages (JSONL: text, label = EMOTION or neutral) no fit has seen "
    "(default: the built-in gate_messages.jsonl).",
)
@click.option(
    "--fpr",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="False-positive rate on the neutral messages.",
)
@click.option("--out", required=True, help="The vector file to write (.safetensors); --force to overwrite.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file (it may be --vectors itself).")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the calibration records as one JSON object.")
def calibrate_gate_cmd(
    vectors_path: str,
    messages_path: str | None,
    fpr: float,
    out: str,
    force: bool,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    as_json: bool,
) -> None:
    """Calibrate the default threshold of `steer --when EMOTION` (and `--when-token`) on labelled user messages:
    the reading of the user's turn exceeded by at most --fpr of the neutral ones; the tensors are unchanged."""
    from steerlab.core.vectors import save_vectors
    from steerlab.read.gate import calibrate_gates, load_gate_messages

    target = Path(out)
    if target.suffix != ".safetensors":
        raise SteerlabError(f"--out {str(target)!r} must end in .safetensors")
    check_out(target, "--out", force=force)
    v = get_vectors(vectors_path, None)
    messages = load_gate_messages(messages_path)
    lm = get_model(model_spec or v.meta.get("model_spec"), revision, dtype)
    v.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    calibrated = calibrate_gates(lm, v, messages, fpr, note=say)
    save_vectors(calibrated, target)
    gates = calibrated.meta["gates"]
    if as_json:
        echo_json(gates)
        return
    for emotion, g in gates.items():
        click.echo(
            f"{emotion}: threshold {g['threshold']:+.4f} ({g['reader']} reader, layer {g['layer']}), token threshold "
            f"{g['token_threshold']:+.4f} (layer {g['token_layer']}); on the calibration messages: "
            f"hit rate {g['calibration_hit_rate']}, false alarms {g['calibration_false_alarm_rate']} "
            f"({g['n_positive']} {emotion}, {g['n_neutral']} neutral)"
        )
    click.echo(f"wrote {target}")
