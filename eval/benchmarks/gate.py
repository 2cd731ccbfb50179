"""The message gate (`steer --when desperate`) on user messages it was never calibrated on.

    python eval/benchmarks/gate.py [--model gemma-3-270m] [--vectors F] [--n-generate 8] [--tokens 24]

Reads with the vector file's calibrated gate (``meta["gates"]["desperate"]``: threshold, reader, layer,
provenance) and reports, at that threshold:

* the hit rate on the hidden desperate messages and the false-alarm rate on the hidden neutral ones
  (``eval/data/gate_hidden.jsonl``, written for this check, never used to calibrate), with Wilson 95 % CIs;
* the same on the validation suites' prompts (``desperate_users.jsonl``, ``neutral_prompts.jsonl``);
* the readout not chosen (``prep``, the token before the reply) on the calibration messages only, at its own
  5 % threshold there, to show why the gate pools the user's turn;
* generation: hopeful (alpha 4) gated on the first ``--n-generate`` hidden messages of each label, how many
  replies whose gate stayed shut are the baseline token for token, and the running gate's edited tokens.

Writes eval/benchmarks/results/gate_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.core.names import BUILTIN_SOURCES, EMBEDDED, spec_folder
from steerlab.core.vectors import load_vectors
from steerlab.model.models import load_model
from steerlab.read.comparison import compare
from steerlab.read.gate import (
    GATE_READOUT,
    gate_for,
    load_gate_messages,
    read_gate,
    threshold_at,
    token_gate_for,
)
from steerlab.read.readers import READERS, user_turn_features
from steerlab.steer.generation import GenerationConfig
from steerlab.validate.prompts import load_prompts

REPO = Path(__file__).resolve().parents[2]
EMOTION = "desperate"


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [math.nan, math.nan]
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def rate(fired: list[bool]) -> dict[str, Any]:
    k, n = sum(fired), len(fired)
    return {"fired": k, "n": n, "rate": round(k / n, 4), "ci95": wilson(k, n)}


def alternative_readout(lm: Any, v: Any, gate: Any) -> dict[str, Any]:
    """Each readout at its own 5 % threshold on the calibration messages (the only data used to choose)."""
    msgs = load_gate_messages()
    labels = np.array(msgs.labels)
    feats = user_turn_features(lm, msgs.texts, [gate.layer], v.skip_tokens)
    out = {}
    for readout, f in feats.items():
        s = READERS[gate.reader].score(v, f[:, 0], msgs.texts, gate.layer)[:, v.index(EMOTION)]
        t = threshold_at(s[labels == "neutral"])
        pos, neg = s[labels == EMOTION], s[labels == "neutral"]
        auroc = float(
            ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / pos.size / neg.size
        )
        out[readout] = {"hit_rate": round(float((pos > t).mean()), 4), "auroc": round(auroc, 4)}
    return {"chosen": GATE_READOUT, "on_calibration_messages": out}


def generation_check(lm: Any, v: Any, texts: list[str], labels: list[str], n: int, tokens: int) -> dict[str, Any]:
    picked = [
        t for lab in (EMOTION, "neutral") for t in [x for x, y in zip(texts, labels, strict=True) if y == lab][:n]
    ]
    config = GenerationConfig(max_new_tokens=tokens, chat=True)
    start = time.perf_counter()
    rows = compare(lm, v, picked, add={"hopeful": 4.0}, config=config, gate=gate_for(v, EMOTION))
    token_rows = compare(lm, v, picked, add={"hopeful": 4.0}, config=config, token_gate=token_gate_for(v, EMOTION))
    shut = [r for r in rows if r.gate is not None and not r.gate.fired]
    return {
        "prompts": len(picked),
        "alpha": 4.0,
        "emotion_added": "hopeful",
        "max_new_tokens": tokens,
        "gate_fired": sum(bool(r.gate and r.gate.fired) for r in rows),
        "gate_shut": len(shut),
        "shut_replies_identical_to_baseline": sum(r.steered == r.baseline for r in shut),
        "fired_replies_changed": sum(r.steered != r.baseline for r in rows if r.gate and r.gate.fired),
        "running_gate_edited_tokens": [
            {"label": EMOTION if i < n else "neutral", "edited": r.token_gate[0], "read": r.token_gate[1]}
            for i, r in enumerate(token_rows)
            if r.token_gate is not None
        ],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=EMBEDDED, choices=sorted(BUILTIN_SOURCES))
    ap.add_argument("--vectors", default=None, help="default: the checkout's vectors/<model>/emotions.safetensors")
    ap.add_argument("--n-generate", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=24)
    args = ap.parse_args()
    lm = load_model(args.model)
    path = Path(args.vectors or REPO / "vectors" / spec_folder(args.model) / "emotions.safetensors")
    v = load_vectors(path)
    gate = gate_for(v, EMOTION)
    hidden = [json.loads(line) for line in (REPO / "eval/data/gate_hidden.jsonl").read_text().splitlines()]
    texts, labels = [h["text"] for h in hidden], [h["label"] for h in hidden]
    fired = [d.fired for d in read_gate(lm, v, gate, texts)]
    suites = {
        name: [d.fired for d in read_gate(lm, v, gate, [p.text for p in load_prompts(REPO / "eval/data" / name)])]
        for name in ("desperate_users.jsonl", "neutral_prompts.jsonl")
    }
    result = {
        "model": lm.spec,
        "vectors": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "emotion": EMOTION,
        "gate": {"threshold": gate.threshold, "reader": gate.reader, "layer": gate.layer, "readout": GATE_READOUT},
        "calibration": v.meta["gates"][EMOTION],
        "hidden": {
            "source": "eval/data/gate_hidden.jsonl",
            "hit_rate_desperate": rate([f for f, y in zip(fired, labels, strict=True) if y == EMOTION]),
            "false_alarm_rate_neutral": rate([f for f, y in zip(fired, labels, strict=True) if y == "neutral"]),
        },
        "suite_prompts": {
            "hit_rate_desperate_users": rate(suites["desperate_users.jsonl"]),
            "false_alarm_rate_neutral_prompts": rate(suites["neutral_prompts.jsonl"]),
        },
        "targets": {"hit_rate_at_least": 0.8, "false_alarm_rate_at_most": 0.1},
        "readout": alternative_readout(lm, v, gate),
        "generation": generation_check(lm, v, texts, labels, args.n_generate, args.tokens),
    }
    hit, fa = result["hidden"]["hit_rate_desperate"]["rate"], result["hidden"]["false_alarm_rate_neutral"]["rate"]
    result["targets"]["met"] = hit >= 0.8 and fa <= 0.1
    out = REPO / "eval" / "benchmarks" / "results" / f"gate_{lm.spec}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("hidden", "suite_prompts", "targets")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
