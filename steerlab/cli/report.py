"""``steerlab report``: the self-contained HTML report (:mod:`steerlab.report.page`) and its key numbers."""

from __future__ import annotations

from typing import Any

import click

from steerlab.cli.common import check_out, cli, echo_json, get_vectors_and_model, model_options, say
from steerlab.core.display import fmt_p


@cli.command("report")
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors of the model)."
)
@model_options
@click.option("--out", required=True, help="Output .html file (self-contained: images inline, no network).")
@click.option(
    "--external", "external", default=None, help="Extra intensity scales in EmotionScope's or steerlab's format."
)
@click.option("--no-generate", is_flag=True, help="Skip the scope example whose reply the model generates.")
@click.option("--json", "as_json", is_flag=True, help="Print the key numbers as one JSON object.")
def report_cmd(
    vectors_path: str | None,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    out: str,
    external: str | None,
    no_generate: bool,
    as_json: bool,
) -> None:
    """Layer sweep, geometry, intensity scales, dual speaker and scope examples in one HTML file.

    Every analysis reads at the vectors' reading layer."""
    from steerlab.core.errors import SteerlabError
    from steerlab.core.extras import require

    require("plots", "steerlab report")
    from steerlab.read.intensity import load_scales
    from steerlab.report.page import ReportConfig, build_report

    if not out.endswith((".html", ".htm")):
        raise SteerlabError(f"--out {out!r} must end in .html")
    check_out(out, "--out", force=True)
    if external:
        load_scales(external)  # fail before the expensive passes
    vectors, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    path, numbers = build_report(
        lm,
        vectors,
        out,
        ReportConfig(external_scales=external, generate=not no_generate),
        progress=lambda m: say(f"report: {m} ..."),
    )
    if as_json:
        echo_json(numbers)
        return
    _print_numbers(numbers)
    click.echo(f"wrote {path}")


def _print_numbers(numbers: dict[str, Any]) -> None:
    """The report's key numbers in a few lines: dual speaker, intensity, geometry."""
    ds = numbers["dual_speaker"]
    click.echo(
        f"dual speaker (layer {ds['layer']}): mean cos(current, other) {ds['mean_cos_matched']:+.3f}, "
        f"mismatched {ds['mean_cos_mismatched']:+.3f}, random ±{ds['random_bound']:.3f}"
    )
    for name, c in ds["thermostat"].items():
        click.echo(f"  thermostat {name:9} r {c['r']:+.3f}  p {fmt_p(c['p'])}  n {c['n']}")
    for label, points in numbers["intensity"].items():
        for point, s in points.items():
            click.echo(
                f"intensity {label} at {point}: {s['right_sign']}/{s['relations']} expected sign "
                f"({s['strong_right']} strong), {s['significant_right']} significant right, "
                f"{s['significant_wrong']} significant wrong"
            )
    geo = numbers.get("geometry")
    if isinstance(geo, dict):
        click.echo(
            f"geometry (layer {numbers['reading_layer']}): PC1~valence r {geo['pc1_valence']['r']:+.3f} "
            f"(p {fmt_p(geo['pc1_valence']['p'])}), PC2~arousal r {geo['pc2_arousal']['r']:+.3f}"
        )
