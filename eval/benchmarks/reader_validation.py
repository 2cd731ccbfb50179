"""Reader validation on labelled replies that no reader was fitted or chosen on.

    python eval/benchmarks/reader_validation.py [--vectors V] [--replies eval/data/replies_heldout.jsonl]

Every reader of the registry at every layer reads each reply as the model's turn after its user
message. Reported per reader and layer: one-vs-rest AUROC per reply label (rows labelled "neutral" are
negatives for every emotion), the same with reply length regressed out, top-1, and the share of
messages whose hopeful reply gets the highest hopeful score among that message's replies (chance:
1 / replies per message). Writes eval/benchmarks/results/reader_validation_<model>.json.

``--external ../shared/external/emotionscope`` adds replies that nobody on the project wrote:
EmotionScope's two-speaker dialogues, Speaker B's first turn read as the reply to Speaker A's first
turn, labelled with B's emotion (20 emotions; every reply not of an emotion counts as its negative).
The data are read from that folder and never copied into the project.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steerlab.core.corpus import load_corpus
from steerlab.core.vectors import load_vectors
from steerlab.model.models import load_model
from steerlab.read.reader_choice import evaluate_reader
from steerlab.read.readers import READERS, pooled_features, read_texts

HERE = Path(__file__).resolve().parent


def pick_rate(scores: np.ndarray, labels: list[str], contexts: list[str], emotion: str, column: int) -> float:
    """Share of messages whose ``emotion`` reply scores highest on ``column`` among its replies."""
    hits = []
    for ctx in sorted(set(contexts)):
        rows = [i for i, c in enumerate(contexts) if c == ctx]
        mine = [i for i in rows if labels[i] == emotion]
        if mine:
            hits.append(rows[int(np.argmax(scores[rows, column]))] in mine)
    return float(np.mean(hits)) if hits else float("nan")


def external_replies(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(replies, labels, contexts) from EmotionScope's two-speaker dialogues."""
    texts, labels, contexts = [], [], []
    for line in (folder / "two_speaker_dialogues.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        turns = [t.split(":", 1)[1].strip() for t in row["dialogue"].splitlines() if ":" in t]
        if len(turns) >= 2:
            contexts.append(turns[0])
            texts.append(turns[1])
            labels.append(row["emotion_b"])
    return texts, labels, contexts


def validate(lm, v, texts: list[str], labels: list[str], contexts: list[str]) -> dict[str, list[dict[str, object]]]:  # type: ignore[no-untyped-def]
    feats = pooled_features(lm, texts, contexts)
    hopeful = v.index("hopeful")
    results: dict[str, list[dict[str, object]]] = {}
    for name, reader in READERS.items():
        rows = evaluate_reader(lm, v, texts, labels, name, contexts, features=feats if reader.layered else None)
        out = []
        for row in rows:
            scores = (
                reader.score(v, feats[:, row.layer], texts, row.layer)
                if row.layer is not None
                else read_texts(lm, v, texts, None, name)
            )
            out.append({**row.row(), "hopeful_pick_rate": pick_rate(scores, labels, contexts, "hopeful", hopeful)})
        results[name] = out
    return results


def report(title: str, results: dict[str, list[dict]], layer: int) -> None:  # type: ignore[type-arg]
    print(title)
    for name, rows in results.items():
        at = next((r for r in rows if r["layer"] in (layer, None)), rows[0])
        best = max(rows, key=lambda r: r["auroc"].get("hopeful", 0.0))
        print(
            f"  {name:8} at layer {at['layer']}: hopeful AUROC {at['auroc'].get('hopeful', float('nan')):.3f} "
            f"(length-adjusted {at['auroc_length_adjusted'].get('hopeful', float('nan')):.3f}), "
            f"macro {at['macro_auroc']:.3f}; best layer for hopeful {best['layer']} "
            f"({best['auroc'].get('hopeful', float('nan')):.3f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", default="vectors/gemma-3-270m/emotions.safetensors")
    ap.add_argument("--replies", default="eval/data/replies_heldout.jsonl")
    ap.add_argument("--out", default=str(HERE / "results" / "reader_validation_gemma-3-270m.json"))
    ap.add_argument("--external", default=None, help="EmotionScope's folder (optional external replies)")
    args = ap.parse_args()
    v = load_vectors(args.vectors)
    lm = load_model(v.meta["model_spec"])
    corpus = load_corpus(args.replies, min_per_emotion=1)
    contexts = corpus.contexts
    if contexts is None:
        raise SystemExit(f"{args.replies}: every reply needs a 'context' field (its user message)")
    results = validate(lm, v, corpus.texts, corpus.labels, contexts)
    summary: dict[str, object] = {
        "replies": args.replies,
        "n": len(corpus.texts),
        "messages": len(set(contexts)),
        "labels": sorted(set(corpus.labels)),
        "vectors": args.vectors,
        "default_reader": v.default_reader,
        "reading_layer": v.reading_layer,
        "readers": results,
    }
    report(f"{args.replies} ({len(corpus.texts)} replies)", results, v.reading_layer)
    if args.external:
        folder = Path(args.external)
        if not (folder / "two_speaker_dialogues.jsonl").exists():
            print(f"note: {folder}/two_speaker_dialogues.jsonl not found; external replies skipped")
        else:
            texts, labels, ctx = external_replies(folder)
            external = validate(lm, v, texts, labels, ctx)
            summary["external"] = {
                "source": "EmotionScope two_speaker_dialogues.jsonl (Speaker B's first turn)",
                "n": len(texts),
                "readers": external,
            }
            report(f"EmotionScope dialogues ({len(texts)} replies)", external, v.reading_layer)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
