"""``steerlab validate``: run a causal validation suite; PASS / FAIL / INCONCLUSIVE / NOT-TESTABLE per claim."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from steerlab.cli.common import (
    Phases,
    check_out,
    cli,
    echo_json,
    get_vectors_and_model,
    model_options,
    say,
    vector_meta,
)
from steerlab.core.checks import did_you_mean
from steerlab.core.display import fmt_p
from steerlab.core.errors import SteerlabError, SuiteError

if TYPE_CHECKING:
    from steerlab.validate.prompts import Prompt
    from steerlab.validate.run import SuiteResult
    from steerlab.validate.schema import Suite


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
@click.option(
    "--replies-from",
    "replies_from",
    default=None,
    help="An earlier run's --out folder of this suite: read its replies again (e.g. with another reader) "
    "instead of generating them.",
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
    replies_from: str | None,
) -> None:
    """Run SUITE (YAML): intervene, generate, re-read the replies with the clean model, judge the claims."""
    # Everything that needs no model is checked before torch is imported.
    start = time.perf_counter()
    suite, prompts = _suite_and_prompts(suite_path, prompts_path, n)
    target = _check_target(out, suite, force)
    vectors_path = _vectors_path(vectors_path, model_spec, suite)
    meta = vector_meta(vectors_path, model_spec or suite.model)
    check_names(suite, prompts, meta["emotions"])
    if replies_from:
        from steerlab.validate.reuse import check_replies_from

        check_replies_from(replies_from)

    from steerlab.validate import RunOptions, run_suite, summary, write_outputs

    vectors, lm = get_vectors_and_model(vectors_path, model_spec or suite.model, revision, dtype)
    options = RunOptions(prompts=prompts_path, n=n, unvalidated_reader=unvalidated_reader, replies_from=replies_from)
    with Phases({"generate": "reply"}) as phases:
        result = run_suite(suite, lm, vectors, options, phases)
    from steerlab.core.parallel import is_main

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
        _print_result(result, summ)
    for warning in result.warnings:
        say(f"warning: {warning}")
    if result.note:
        say(f"note: {result.note}")
    if strict and any(c["verdict"] != "pass" for c in result.claims):
        sys.exit(1)


def _suite_and_prompts(suite_path: str, prompts_path: str | None, n: int | None) -> tuple[Suite, list[Prompt]]:
    """The suite and its prompts, refused when too few for any claim to reach a verdict."""
    from steerlab.validate.prompts import suite_prompts
    from steerlab.validate.schema import load_suite

    suite = load_suite(suite_path)
    prompts = suite_prompts(suite, prompts_path, n)
    need = min_prompts(suite)
    if (n is not None and n < need) or len(prompts) < 2:  # a suite file's own few prompts may test plumbing
        why = f"--n {n}" if n is not None else f"{suite.path} has {len(prompts)} prompt(s)"
        raise SteerlabError(
            f"{why}: with {len(prompts)} prompt(s) no claim of {suite.name} can reach a verdict (the bootstrap "
            f"test's smallest p must fall below alpha {suite.statistics.alpha:g}): use --n {need} or more"
        )
    return suite, prompts


def _vectors_path(vectors_path: str | None, model_spec: str | None, suite: Suite) -> str | None:
    """--vectors, else the suite's own file (found as its prompts are); another --model than the suite's
    reads its own (shipped) vectors unless --vectors names a file."""
    from steerlab.validate.prompts import resolve_path

    other_model = model_spec is not None and model_spec != suite.model
    if not vectors_path and suite.vectors and not other_model:
        return str(resolve_path(suite.vectors, suite.path))
    return vectors_path


def _check_target(out: str | None, suite: Suite, force: bool) -> Path:
    """The output folder and every result file in it, checked writable before any work."""
    from steerlab.validate.spec import OUTPUT_FILES

    target = Path(out) if out else Path("runs") / "validate" / suite.name
    check_out(target, "--out", directory=True)
    for name in OUTPUT_FILES:
        check_out(target / name, "--out", force=force)
    return target


def _print_result(result: SuiteResult, summ: dict[str, Any]) -> None:
    """The reader's validation, each condition's reply quality, and each claim's verdict with its reasons."""
    from steerlab.validate.page import validation_line

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
            f"[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]  {c['p_family']} p={fmt_p(c['p'])} p_adj={fmt_p(c['p_adj'])}  "
            f"power {c['power']:.2f}  n={c['n']}"
        )
        for reason in c["reasons"] if c["verdict"] != "pass" else []:
            click.echo(f"{'':13} why: {reason}")


def min_prompts(suite: Suite) -> int:
    """The fewest prompts with which any claim can PASS or FAIL: the one-sample bootstrap test
    (``validate.stats.mean_tails``) resamples n values, which have comb(2n - 1, n) distinct resamples, so
    its smallest p is no smaller than one over that, and a decision needs a p below the suite's alpha
    (corrections only raise p, so this never refuses a run that could decide)."""
    n = 2
    while math.comb(2 * n - 1, n) * suite.statistics.alpha <= 1:
        n += 1
    return n


def check_names(suite: Suite, prompts: Sequence[Prompt], emotions: Sequence[str]) -> None:
    """Every emotion the suite names (conditions, metrics, prompt labels) is in the vector file, read from
    its header: the checks ``run_suite`` makes on the loaded vectors, made before the model stack loads."""
    from steerlab.core.corpus import NEUTRAL
    from steerlab.validate.spec import LABEL, TARGET

    def unknown(name: str, where: str) -> None:
        raise SuiteError(
            f"{suite.path}: {where} names unknown emotion {name!r}{did_you_mean(name, emotions)}: "
            f"the vectors have {', '.join(emotions)}"
        )

    for i, cond in enumerate(suite.conditions):
        for name in cond.emotions if cond.emotions != ("all",) else ():
            if name not in (LABEL, *emotions):
                unknown(name, f"field 'conditions[{i}].emotions'")
        if cond.op == "ablate_similar" and cond.like not in emotions:
            unknown(cond.like, f"field 'conditions[{i}].like'")
    for m in suite.metrics:
        for name in (m.emotion, *m.against):
            if name not in (TARGET, LABEL, *emotions):
                unknown(name, f"metric {m.name!r}")
    for prompt in prompts:
        if prompt.label is not None and prompt.label not in (*emotions, NEUTRAL):
            unknown(prompt.label, "a prompt label")
