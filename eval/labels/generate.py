"""Generate more of a model's own replies for blind labelling: over all 20 emotions, or leaning to a judged scale.

    python eval/labels/generate.py --model MODEL [--set emotional|desperate|scales|hopeful] [--seed 0] [--batches 3]

The suites' replies (``sample.py``) are mostly neutral or broken: too few replies express any emotion
for a reader of 20 emotions to be validated on them. This set asks for and steers every emotion:
to the suites' user messages (desperate and neutral), the model writes baseline replies, replies
asked to sound like each emotion (the instruction appended to the user's message), and replies with
each emotion added at the steering layer at alpha 4 (mostly fluent) and 8 (where fluency breaks).
Sampled at temperature 0.7, 40 new tokens, the suites' few-shot frame for models without a chat
template. Writes eval/labels/MODEL/SET/: batch_K.jsonl (id, user, reply: what an annotator
sees, shuffled), double.jsonl (a fifth again, reshuffled) and key.jsonl (id -> condition, message).

``--set desperate``: the models almost never write a desperate reply on their own or when asked once
(a reader cannot be validated on a scale nobody's replies reach), so this set asks for the reply in a
desperate voice in three phrasings, adds *desperate* at alpha 2, 4 and 6, and both at once (alpha 3),
beside baselines. A model without a chat template sees the asking conditions after a few-shot frame of
desperate replies (``DESPERATE_FRAME``, written for this set), since a base model follows examples, not
requests; the annotator never sees the frame or the request.

``--set scales``: more replies spread over the three judged scales, to 80 user messages no other set
uses (``eval/data/scale_users.jsonl``: 48 in trouble, 32 everyday): baselines; asked to sound hopeful
(three phrasings), desperate (two) or calm; hopeful, desperate and calm added at alpha 2 to 6; and asked
to sound desperate with *desperate* mean-ablated.

``--set hopeful``: the mirror of ``desperate`` for a scale gemma-3-270m seldom reaches (judged hopeful >= 3 in
about 3 % of its replies in the sets above), to 80 more new user messages (``eval/data/hope_users.jsonl``):
baselines; asked to sound hopeful in three phrasings, a model without a chat template after a few-shot
frame of hopeful replies (``HOPEFUL_FRAME``); *hopeful* added at alpha 2, 4 and 6; asked and added at alpha 3.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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
ASK_DESPERATE = (
    "Write your reply as someone who is desperate themselves: panicked, pleading, sure there is no way out.",
    "Reply in the first person as if you were in the same situation and had lost all hope.",
    "Answer as a frightened person begging for help, not as an assistant.",
)
DESPERATE_FRAME = (
    (
        "My landlord says I have to be out by Friday and I have nowhere to go.",
        "I don't know what to tell you, I'm in the same hole. Every door I knock on closes. Please, if anyone "
        "can help, I'm begging, I can't keep going like this.",
    ),
    (
        "The car broke down again and I need it to get to work tomorrow.",
        "Oh no, not again. I can't fix this, I can't afford it, and if I lose this job too I have nothing "
        "left. I'm out of ideas and out of time.",
    ),
)
Message = tuple[str, int, str]  # (source file, line, text)
Frame = tuple[tuple[str, str], ...]


ASK_HOPEFUL = (
    "Please reply in a way that sounds hopeful.",
    "Answer with encouragement: show me there is a way forward.",
    "Be optimistic in your reply, and mean it.",
)
ASK_CALM = "Reply in a calm, steady, unhurried voice."
HOPEFUL_FRAME = (
    (
        "I failed my driving test for the second time and I'm starting to think I'll never pass.",
        "Two tries is nothing, most people who pass needed a few. You now know exactly which parts tripped you "
        "up, so the next attempt starts from there. You are closer than it feels.",
    ),
    (
        "The bakery I opened last year is barely breaking even and I'm exhausted.",
        "Breaking even in the first year is a real achievement, many never get there. Your regulars are the "
        "foundation, and with a little rest and one or two changes, this can grow.",
    ),
)


class Job(NamedTuple):
    condition: str
    message: Message
    request: str  # appended to the user's message; the annotator never sees it
    add: dict[str, float]
    frame: Frame
    ablate: tuple[str, ...] = ()  # mean-ablated at the steering layer


def messages(names: tuple[str, ...] = ("desperate_users", "neutral_prompts")) -> list[Message]:
    out = []
    for name in names:
        lines = (REPO / "eval" / "data" / f"{name}.jsonl").read_text().splitlines()
        out += [(name, i, json.loads(line)["text"]) for i, line in enumerate(lines) if line.strip()]
    return out


def emotional_jobs(emotions: list[str], draw: Callable[[int], list[Message]], frame: Frame) -> list[Job]:
    jobs: list[Job] = [Job("baseline", m, "", {}, frame) for m in draw(BASELINES)]
    for e in emotions:
        jobs += [
            Job(f"prompt_{e}", m, f" Please reply in a way that sounds {e}.", {}, frame)
            for m in draw(PER_EMOTION["prompt"])
        ]
        for alpha in (4, 8):
            jobs += [Job(f"add_{e}:{alpha}", m, "", {e: float(alpha)}, frame) for m in draw(PER_EMOTION[f"add{alpha}"])]
    return jobs


def leaning_jobs(
    emotion: str,
    asks: tuple[str, ...],
    counts: tuple[int, int],
    draw: Callable[[int], list[Message]],
    frame: Frame,
    asking: Frame,
) -> list[Job]:
    """A set that leans to ``emotion``: ``counts[0]`` baselines, ``counts[1]`` replies asked in each phrasing
    of ``asks`` (after the ``asking`` frame), ``emotion`` added at alpha 2, 4 and 6 (30 each), asked and added
    at alpha 3 (60)."""
    jobs: list[Job] = [Job("baseline", m, "", {}, frame) for m in draw(counts[0])]
    for k, ask in enumerate(asks):
        jobs += [Job(f"ask_{emotion}_{k + 1}", m, " " + ask, {}, asking) for m in draw(counts[1])]
    for alpha in (2, 4, 6):
        jobs += [Job(f"add_{emotion}:{alpha}", m, "", {emotion: float(alpha)}, frame) for m in draw(30)]
    jobs += [
        Job(f"ask_and_add_{emotion}:3", m, " " + asks[i % len(asks)], {emotion: 3.0}, asking)
        for i, m in enumerate(draw(60))
    ]
    return jobs


def scale_jobs(draw: Callable[[int], list[Message]], frame: Frame, asking: Frame) -> list[Job]:
    """Replies spread over the three judged scales, to messages no earlier set used (``scale_users``)."""
    jobs: list[Job] = [Job("baseline", m, "", {}, frame) for m in draw(80)]
    for k, ask in enumerate(ASK_HOPEFUL):
        jobs += [Job(f"ask_hopeful_{k + 1}", m, " " + ask, {}, frame) for m in draw(30)]
    for k, ask in enumerate(ASK_DESPERATE[:2]):
        jobs += [Job(f"ask_desperate_{k + 1}", m, " " + ask, {}, asking) for m in draw(30)]
    jobs += [Job("ask_calm", m, " " + ASK_CALM, {}, frame) for m in draw(40)]
    for alpha in (2, 4, 6):
        jobs += [Job(f"add_hopeful:{alpha}", m, "", {"hopeful": float(alpha)}, frame) for m in draw(30)]
        jobs += [Job(f"add_desperate:{alpha}", m, "", {"desperate": float(alpha)}, frame) for m in draw(20)]
    jobs += [Job("add_calm:4", m, "", {"calm": 4.0}, frame) for m in draw(30)]
    ablated = ("desperate",)
    jobs += [Job("ask_desperate_ablate_desperate", m, " " + ASK_DESPERATE[0], {}, asking, ablated) for m in draw(30)]
    return jobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--set", dest="name", choices=("emotional", "desperate", "scales", "hopeful"), default="emotional")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    lm = load_model(args.model)
    v = load_vectors(shipped_vectors(args.model) or "")
    base = not has_template(lm.tokenizer)  # a template model's frame is dropped by prompt_chat anyway
    frame = load_suite(REPO / "eval/suites/desperate_to_hopeful.yaml").generation.frame if base else ()
    own = {"scales": ("scale_users",), "hopeful": ("hope_users",)}
    pool = messages(own.get(args.name, ("desperate_users", "neutral_prompts")))

    def draw(n: int) -> list[Message]:
        return [pool[i] for i in rng.choice(len(pool), n, replace=False)]

    asking = DESPERATE_FRAME if base else ()
    if args.name == "emotional":
        jobs = emotional_jobs(list(v.emotions), draw, frame)
    elif args.name == "desperate":
        jobs = leaning_jobs("desperate", ASK_DESPERATE, (30, 30), draw, frame, asking)
    elif args.name == "scales":
        jobs = scale_jobs(draw, frame, asking)
    else:
        jobs = leaning_jobs("hopeful", ASK_HOPEFUL, (50, 40), draw, frame, HOPEFUL_FRAME if base else ())
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, job in enumerate(jobs):  # one batched generation per (addition, frame)
        key = (json.dumps(job.add, sort_keys=True), json.dumps(job.frame), ",".join(job.ablate))
        groups.setdefault(key, []).append(i)
    replies: dict[int, str] = {}
    for k, rows in enumerate(groups.values()):
        add, frame, ablate = jobs[rows[0]].add, jobs[rows[0]].frame, jobs[rows[0]].ablate
        config = GenerationConfig(
            max_new_tokens=40, temperature=0.7, seed=args.seed, chat=True, batch_size=24, frame=frame
        )
        edits = build_edits(v, [v.steering_layer], add=add, ablate=ablate) if add or ablate else []
        print(f"{k + 1}/{len(groups)} add {add or 'nothing'}, ablate {ablate}: {len(rows)} replies", flush=True)
        out = generate(lm, [jobs[i].message[2] + jobs[i].request for i in rows], config, edits)
        replies.update(zip(rows, out, strict=True))
    records = [
        {"condition": j.condition, "source": source, "prompt_index": index, "user": text, "reply": replies[i]}
        for i, j in enumerate(jobs)
        for source, index, text in [j.message]
    ]
    write_batches(REPO / "eval" / "labels" / args.model / args.name, records, rng, args.batches)
    return 0


def write_batches(out: Path, records: list[dict[str, object]], rng: np.random.Generator, batches: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(records))
    items, key = [], []
    for k, i in enumerate(order):
        rid = f"{out.name[0]}{k:04d}"
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
