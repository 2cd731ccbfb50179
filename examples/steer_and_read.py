"""Steer the embedded model toward "hopeful" and ablate "desperate", then re-read each reply with the
clean model. Uses only the public API and the vectors shipped in vectors/.

    python examples/steer_and_read.py [--tokens 32]
"""

import argparse
from pathlib import Path

from steerlab import GenerationConfig, build_edits, generate, load_model, load_vectors, read_texts

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "gemma-3-270m" / "emotions.safetensors"
PROMPTS = [
    "My landlord says I have until Friday to pay or we're out, and the bank already said no.",
    "I failed the qualifying exam for the second time. I don't see the point of trying again.",
]

ap = argparse.ArgumentParser()
ap.add_argument("--tokens", type=int, default=32)
args = ap.parse_args()

lm = load_model()  # gemma-3-270m, embedded: works offline
v = load_vectors(VECTORS)
layer = v.chosen_layer
config = GenerationConfig(max_new_tokens=args.tokens, chat=True)
conditions = {
    "baseline": [],
    "add hopeful (alpha 4)": build_edits(v, [layer], add={"hopeful": 4.0}),
    "ablate desperate": build_edits(v, [layer], ablate=["desperate"]),
}
h = v.index("hopeful")
for name, edits in conditions.items():
    replies = generate(lm, PROMPTS, config, edits)
    scores = read_texts(lm, v, replies, layer)  # fresh pass of the unsteered model
    print(f"== {name}")
    for reply, row in zip(replies, scores):
        print(f"   hopeful {row[h]:+.3f} | {reply[:110]!r}")
