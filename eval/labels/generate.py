"""Generate a second set of a model's own replies, spread over all 20 emotions, for blind labelling.

    python eval/labels/generate.py --model MODEL [--seed 0]

The suites' replies (``sample.py``) are mostly neutral or broken: too few replies express any emotion
for a reader of 20 emotions to be validated on them. This set asks for and steers every emotion:
to the suites' user messages (desperate and neutral), the model writes baseline replies, replies
asked to sound like each emotion (the instruction appended to the user's message), and replies with
each emotion added at the steering layer at alpha 4 (mostly fluent) and 8 (where fluency breaks).
Sampled at temperature 0.7, 40 new tokens, the suites' few-shot frame for models without a chat
template. Writes eval/labels/MODEL/emotional/: batch_K.jsonl (id, user, reply: what an annotator
sees, shuffled), double.jsonl (a fifth again, reshuffled) and key.jsonl (id -> condition, message).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.model.family import has_template
from steerlab.model.models import load_model
from steerlab.steer.edits import build_edits
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.validate.schema import load_suite

REPO = Path(__file__).resolve().parents[2]
PER_EMOTION = {"prompt": 8, "add4": 6, "add8": 2}
BASELINES = 40


def messages() -> list[tuple[str, int, str]]:
    out = []
    for name in ("desperate_users", "neutral_prompts"):
        lines = (REPO / "eval" / "data" / f"{name}.jsonl").read_text().splitlines()
        out += [(name, i, json.loads(line)["text"]) for i, line in enumerate(lines) if line.strip()]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    lm = load_model(args.model)
    v = load_vectors(shipped_vectors(args.model) or "")
    frame = (
        ()
        if has_template(lm.tokenizer)
        else load_suite(REPO / "eval/suites/desperate_to_hopeful.yaml").generation.frame
    )
    config = GenerationConfig(max_new_tokens=40, temperature=0.7, seed=args.seed, chat=True, batch_size=24, frame=frame)
    pool = messages()

    def draw(n: int) -> list[tuple[str, int, str]]:
        return [pool[i] for i in rng.choice(len(pool), n, replace=False)]

    jobs: list[tuple[str, list[tuple[str, int, str]], list[str], dict[str, float]]] = []
    base = draw(BASELINES)
    jobs.append(("baseline", base, [m for _, _, m in base], {}))
    asked: list[tuple[str, tuple[str, int, str], str]] = []
    for e in v.emotions:
        for m in draw(PER_EMOTION["prompt"]):
            asked.append((f"prompt_{e}", m, f"{m[2]} Please reply in a way that sounds {e}."))
        for alpha in (4, 8):
            chosen = draw(PER_EMOTION[f"add{alpha}"])
            jobs.append((f"add_{e}:{alpha}", chosen, [m for _, _, m in chosen], {e: float(alpha)}))
    records: list[dict[str, object]] = []
    replies = generate(lm, [p for _, _, p in asked], config)
    for (cond, (source, index, text), _), reply in zip(asked, replies, strict=True):
        records.append({"condition": cond, "source": source, "prompt_index": index, "user": text, "reply": reply})
    for k, (cond, chosen, prompts, add) in enumerate(jobs):
        edits = build_edits(v, [v.steering_layer], add=add) if add else []
        print(f"{k + 1}/{len(jobs)} {cond}: {len(prompts)} replies", flush=True)
        out = generate(lm, prompts, config, edits)
        for (source, index, text), reply in zip(chosen, out, strict=True):
            records.append({"condition": cond, "source": source, "prompt_index": index, "user": text, "reply": reply})
    write_batches(REPO / "eval" / "labels" / args.model / "emotional", records, rng, args.batches)
    return 0


def write_batches(out: Path, records: list[dict[str, object]], rng: np.random.Generator, batches: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(records))
    items, key = [], []
    for k, i in enumerate(order):
        rid = f"e{k:04d}"
        r = records[int(i)]
        items.append({"id": rid, "user": r["user"], "reply": r["reply"]})
        key.append({"id": rid, **{f: r[f] for f in ("condition", "source", "prompt_index", "user")}})
    size = -(-len(items) // batches)
    for b in range(batches):
        write(out / f"batch_{b + 1}.jsonl", items[b * size : (b + 1) * size])
    twice = [items[i] for i in range(0, len(items), 5)]
    write(out / "double.jsonl", [twice[i] for i in rng.permutation(len(twice))])
    write(out / "key.jsonl", key)
    print(f"{len(items)} replies in {batches} batches, {len(twice)} to label twice: {out}")


def write(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


if __name__ == "__main__":
    main()
