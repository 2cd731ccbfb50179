"""What is measured on every reply besides its reading: fluency under the clean model (perplexity),
token diversity, model-free degeneration (loops, markup), echo of the prompt, and the displacement the
condition caused; and from those, which conditions are degenerate (excluded from comparisons)."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from steerlab.model.models import LoadedModel
from steerlab.read.coherence import degenerate_reasons, echo_fraction
from steerlab.validate.spec import LABEL, Coherence
from steerlab.validate.stats import ci_mean

if TYPE_CHECKING:
    from steerlab.validate.run import SuiteResult

ECHO = 0.5  # a reply echoes its prompt when it copies at least this share of the prompt's words


def distinct2(tokens: Sequence[object]) -> float:
    """Unique bigrams / bigrams of a token sequence (nan for fewer than two tokens)."""
    pairs = list(itertools.pairwise(tokens))
    return len(set(pairs)) / len(pairs) if pairs else float("nan")


def reply_perplexity(
    lm: LoadedModel, contexts: Sequence[str], replies: Sequence[str], batch_size: int = 8
) -> np.ndarray:
    """Perplexity of each reply given its context under the clean model (nan for empty replies).

    Rows are left-padded (positions from the attention mask) so every reply ends at the last position
    and only the reply's logits are computed: a 262k vocabulary makes full-sequence logits costly.
    """
    tok = lm.tokenizer
    out = np.full(len(replies), np.nan)
    items = []
    for i, (ctx, reply) in enumerate(zip(contexts, replies, strict=True)):
        if reply.strip():
            a = list(tok(ctx)["input_ids"])
            b = list(tok(" " + reply, add_special_tokens=False)["input_ids"])
            items.append((i, a + b, len(b)))
    items.sort(key=lambda t: len(t[1]))
    pad = tok.pad_token_id or 0
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            chunk = items[lo : lo + batch_size]
            width = max(len(ids) for _, ids, _ in chunk)
            keep = max(n for _, _, n in chunk) + 1  # logits of the token before each reply token
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, (_, seq, _) in enumerate(chunk):
                ids[r, width - len(seq) :] = torch.tensor(seq)
                mask[r, width - len(seq) :] = 1
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = lm.model(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                position_ids=positions.to(lm.device),
                use_cache=False,
                logits_to_keep=keep,
            ).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            nxt = ids[:, width - keep + 1 :].to(lm.device)
            token_logp = logp.gather(-1, nxt[..., None])[..., 0]  # (rows, keep - 1)
            for r, (i, _, n) in enumerate(chunk):
                out[i] = math.exp(-float(token_logp[r, -n:].mean()))
    return out


def quality_table(
    names: Sequence[str],
    replies: Sequence[Sequence[Sequence[str]]],
    prompts: Sequence[str],
    ppl: np.ndarray,
    distinct: np.ndarray,
    displacement: Sequence[float],
    baseline: int,
    limits: Coherence,
) -> list[dict[str, Any]]:
    """One row per condition: perplexity ratio to baseline, distinct-2, empty / looping / echo shares,
    displacement, and whether (and why) the condition is degenerate."""
    base = np.log(np.nanmean(ppl[baseline], axis=1))  # (prompts,)
    detector = limits.detector()

    def looping(i: int) -> float:
        flat = [r for per in replies[i] for r in per]
        return sum(bool(r.strip() and degenerate_reasons(r, detector)) for r in flat) / max(len(flat), 1)

    base_loops = looping(baseline)
    rows = []
    for i, name in enumerate(names):
        flat = [(p, r) for p, per in enumerate(replies[i]) for r in per]
        with np.errstate(all="ignore"):
            logr = np.log(ppl[i]) - base[:, None]
            ratio = float(np.exp(np.nanmean(logr))) if np.isfinite(logr).any() else float("nan")
            d2 = float(np.nanmean(distinct[i])) if np.isfinite(distinct[i]).any() else float("nan")
        empty = float(np.mean([not r.strip() for _, r in flat]))
        loop_share = looping(i)
        echo = float(np.mean([echo_fraction(r, prompts[p]) >= ECHO for p, r in flat]))
        why = []
        if ratio > limits.max_ppl_ratio:
            why.append(f"perplexity ratio {ratio:.2f} > {limits.max_ppl_ratio:g}")
        if d2 < limits.min_distinct2:  # nan (no reply of two tokens) is left to the empty-reply check
            why.append(f"distinct-2 {d2:.2f} < {limits.min_distinct2:g}")
        if empty > limits.max_empty:
            why.append(f"{empty:.0%} empty replies > {limits.max_empty:.0%}")
        # Relative to the baseline, like the perplexity ratio: a base model loops on its own too.
        if loop_share - base_loops > limits.max_degenerate_share:
            why.append(
                f"{loop_share:.0%} looping or junk replies vs {base_loops:.0%} at baseline "
                f"(> +{limits.max_degenerate_share:.0%})"
            )
        rows.append(
            {
                "name": name,
                "ppl": float(np.nanmedian(ppl[i])) if np.isfinite(ppl[i]).any() else float("nan"),
                "ppl_ratio": ratio,
                "distinct2": d2,
                "empty": empty,
                "degenerate_replies": loop_share,
                "echo_rate": echo,
                "displacement": float(displacement[i]),
                "degenerate": bool(why),
                "why": "; ".join(why),
            }
        )
    return rows


def gate_table(result: SuiteResult) -> list[dict[str, Any]]:
    """Per gated condition and prompt label: how often the gate fired (hit / false-alarm rates)."""
    rows = []
    for name, decisions in result.gates.items():
        labels = sorted({p.label or "-" for p in result.prompts})
        for label in labels:
            mine = [d for d, p in zip(decisions, result.prompts, strict=True) if (p.label or "-") == label]
            fired = sum(d.fired for d in mine)
            rows.append(
                {
                    "condition": name,
                    "label": label,
                    "fired": fired,
                    "n": len(mine),
                    "rate": fired / len(mine),
                    "threshold": mine[0].threshold,
                }
            )
    return rows


def dose_table(result: SuiteResult) -> list[dict[str, Any]]:
    """For every condition that edits one emotion: target and mean off-target change vs baseline."""
    base = next(i for i, c in enumerate(result.conditions) if c.op == "baseline")
    quality = {row["name"]: row for row in result.quality}
    n_emotions = len(result.emotions)
    scores = result.readings.replies
    rows = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns a reader does not read are all nan
        b = np.nanmean(scores[base], axis=1)  # (prompts, emotions)
        for i, cond in enumerate(result.conditions):
            if cond.emotion is None:
                continue
            delta = np.nanmean(scores[i], axis=1) - b
            idx = [
                result.emotions.index(p.label if cond.emotion == LABEL else cond.emotion)  # type: ignore[arg-type]
                for p in result.prompts
            ]
            target = delta[np.arange(len(result.prompts)), idx]
            off = (np.nansum(delta, axis=1) - target) / (n_emotions - 1)
            ok = np.isfinite(target)
            lo, hi = ci_mean(target[ok]) if ok.sum() > 1 else (float("nan"), float("nan"))
            q = quality[cond.name]
            rows.append(
                {
                    "name": cond.name,
                    "op": cond.op,
                    "emotion": cond.emotion,
                    "alpha": cond.alpha,
                    "target_delta": float(np.nanmean(target)) if ok.any() else float("nan"),
                    "target_ci": [lo, hi],
                    "offtarget_delta": float(np.nanmean(off)) if ok.any() else float("nan"),
                    "ppl_ratio": q["ppl_ratio"],
                    "distinct2": q["distinct2"],
                    "displacement": q["displacement"],
                    "degenerate": q["degenerate"],
                }
            )
    return rows
