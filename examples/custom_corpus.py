"""Extract vectors from your own small corpus, save them, and read new texts with them.

python examples/custom_corpus.py [--model gemma-3-270m] [--out /tmp/my_vectors/emotions.safetensors]
"""

import argparse
import json
import tempfile
from pathlib import Path

from steerlab import (
    ExtractConfig,
    extract,
    load_corpus,
    load_model,
    load_vectors,
    read_texts,
    save_vectors,
)

TEXTS = {
    "cheerful": [
        "The whole team sang along in the van all the way to the beach.",
        "Grandma's laugh filled the kitchen as the pancakes kept coming.",
        "We won the raffle and spent the prize on ice cream for everyone.",
        "The puppy bounded through the sprinkler, soaking us all.",
        "Sunlight, a day off, and a long walk with an old friend.",
    ],
    "tense": [
        "The footsteps in the hall stopped right outside my door.",
        "Two minutes left on the clock and the wire colours looked identical.",
        "The results email sat unopened while my pulse thudded in my ears.",
        "The car behind us had followed every turn for ten miles.",
        "She counted the seconds between the flash and the thunder, each one shorter.",
    ],
}
NEUTRAL = [
    "The library opens at nine on weekdays.",
    "Add the flour gradually while stirring.",
    "The train to the airport leaves from platform four.",
]

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="gemma-3-270m")
ap.add_argument("--out", default=str(Path(tempfile.mkdtemp()) / "emotions.safetensors"))
args = ap.parse_args()

corpus_file = Path(args.out).with_name("corpus.jsonl")
corpus_file.parent.mkdir(parents=True, exist_ok=True)
rows = [{"text": t, "emotion": e} for e, ts in TEXTS.items() for t in ts] + [
    {"text": t, "emotion": "neutral"} for t in NEUTRAL
]
corpus_file.write_text("".join(json.dumps(r) + "\n" for r in rows))

lm = load_model(args.model)
result = extract(lm, load_corpus(corpus_file), ExtractConfig(test_fraction=0.4, seed=0))
save_vectors(result.vectors, args.out)
v = load_vectors(args.out)
print(
    f"saved {args.out}; steering layer {v.steering_layer}, reading layer {v.reading_layer} "
    f"({v.default_reader} reader); held-out top-1 per layer:",
    [round(r.top1, 2) for r in result.sweep],
)
new = [
    "The smoke alarm went off at 3 a.m. and the stairs were full of smoke.",
    "Everyone cheered when the cake came out with sparklers on top.",
]
for text, row in zip(new, read_texts(lm, v, new), strict=True):
    print(f"{dict(zip(v.emotions, row.round(3).tolist(), strict=True))}  {text}")
