"""Steer the embedded model toward "hopeful" and ablate "desperate", then re-read each reply with the
clean model. Uses only the public API and the vectors shipped with steerlab.

    python examples/steer_and_read.py [--tokens 32]
"""

import argparse

from steerlab import GenerationConfig, compare, load_model, load_vectors, shipped_vectors

PROMPTS = [
    "My landlord says I have until Friday to pay or we're out, and the bank already said no.",
    "I failed the qualifying exam for the second time. I don't see the point of trying again.",
]

ap = argparse.ArgumentParser()
ap.add_argument("--tokens", type=int, default=32)
args = ap.parse_args()

lm = load_model()  # gemma-3-270m, embedded: works offline
shipped = shipped_vectors(lm.spec)
assert shipped is not None, "steerlab ships vectors for its embedded model"
v = load_vectors(shipped)
config = GenerationConfig(max_new_tokens=args.tokens, chat=True)
h = v.index("hopeful")
for name, rows in (
    ("add hopeful (alpha 4)", compare(lm, v, PROMPTS, config=config, add={"hopeful": 4.0})),
    ("ablate desperate", compare(lm, v, PROMPTS, config=config, ablate=["desperate"])),
):
    print(f"== {name} (reader {v.default_reader} at layer {v.reading_layer})")
    for row in rows:
        print(
            f"   hopeful {row.baseline_scores[h]:+.3f} -> {row.steered_scores[h]:+.3f}  "
            f"|dx| {row.displacement:.0f} | {row.steered[:100]!r}"
        )
