"""Causal validation suites: state a claim, intervene, generate, re-read with the clean model, decide.

Modules, in pipeline order: :mod:`.schema` and :mod:`.claim_schema` (suite files), :mod:`.prompts`,
:mod:`.conditions` (displacement-matched controls and per-row edits), :mod:`.measure` (with
:mod:`steerlab.read.coherence`: fluency, loops, echo), :mod:`.stats` (tests, CIs, correction, power),
:mod:`.judgement` and :mod:`.rule` (the decision rule), :mod:`.decide` (claims, premises, readers),
:mod:`.run`, :mod:`.outputs` and :mod:`.page`.

Verdicts per claim: PASS (the effect and every non-degenerate control comparison hold after the
suite's correction), FAIL (the effect is significantly reversed, or a control significantly beats the
condition, after correction), NOT-TESTABLE (its premise did not PASS), INCONCLUSIVE otherwise.
"""

from typing import TYPE_CHECKING

from steerlab import lazy_names

# Names resolve on first use (PEP 562): reading and checking a suite file imports no torch.
_HOMES = {
    "degenerate_reasons": "steerlab.read.coherence",
    "echo_fraction": "steerlab.read.coherence",
    "Condition": "conditions",
    "condition_edits": "conditions",
    "expand_conditions": "conditions",
    "Readings": "decide",
    "metric_values": "decide",
    "distinct2": "measure",
    "reply_perplexity": "measure",
    "summary": "outputs",
    "write_outputs": "outputs",
    "Prompt": "prompts",
    "load_prompts": "prompts",
    "select_prompts": "prompts",
    "suite_prompts": "prompts",
    "judge": "rule",
    "RunOptions": "run",
    "SuiteResult": "run",
    "run_suite": "run",
    "Suite": "schema",
    "load_suite": "schema",
    "parse_suite": "schema",
    "adjust": "stats",
    "ci_mean": "stats",
    "sign_flip_p": "signflip",
}


__getattr__ = lazy_names(__name__, _HOMES)


__all__ = sorted(_HOMES)  # the public names: the keys of the one table above

if TYPE_CHECKING:  # the same names, eagerly, for type checkers (tests/test_house.py keeps them equal)
    from steerlab.read.coherence import degenerate_reasons, echo_fraction
    from steerlab.validate.conditions import Condition, condition_edits, expand_conditions
    from steerlab.validate.decide import Readings, metric_values
    from steerlab.validate.measure import distinct2, reply_perplexity
    from steerlab.validate.outputs import summary, write_outputs
    from steerlab.validate.prompts import Prompt, load_prompts, select_prompts, suite_prompts
    from steerlab.validate.rule import judge
    from steerlab.validate.run import RunOptions, SuiteResult, run_suite
    from steerlab.validate.schema import Suite, load_suite, parse_suite
    from steerlab.validate.signflip import sign_flip_p
    from steerlab.validate.stats import adjust, ci_mean
