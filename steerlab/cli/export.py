"""``steerlab export``: an emotion direction for another runtime (llama.cpp's control-vector GGUF)."""

from __future__ import annotations

import click

from steerlab.cli.common import check_out, cli, get_vectors, layer_list


@cli.command("export")
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors of the model)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gguf"]),
    default="gguf",
    show_default=True,
    help="gguf: a llama.cpp control vector (use with --control-vector-scaled FILE 1).",
)
@click.option("--emotion", required=True, help="The emotion to export.")
@click.option("--alpha", default=4.0, show_default=True, type=float, help="Strength, folded into the file.")
@click.option("--layers", "layer_spec", default=None, help="8, 6-10, 3,5 (default: the steering layer; not 0).")
@click.option("--out", required=True, help="Output .gguf file.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def export_cmd(
    vectors_path: str | None, fmt: str, emotion: str, alpha: float, layer_spec: str | None, out: str, force: bool
) -> None:
    """Write an emotion direction for another runtime: llama.cpp's control-vector GGUF, alpha unit
    folded in, layer k = steerlab's layer k (the output of block k)."""
    from steerlab.core.checks import finite
    from steerlab.export.control_vector import write_control_vector

    finite(alpha, "--alpha")
    check_out(out, "--out", force=force)
    v = get_vectors(vectors_path, None)
    layers = layer_list(layer_spec, v.n_layers)
    emotion = v.name(emotion)
    path = write_control_vector(out, v, emotion, alpha, layers)
    click.echo(
        f"wrote {path}: {emotion} alpha {alpha:g} at layers {v.layers_for_steering(layers)} "
        f"(llama.cpp: --control-vector-scaled {path} 1)"
    )
