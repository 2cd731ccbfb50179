"""A chat reply streamed token by token, each token read at the reading layer as the model writes it.

The reply is the one :func:`generation.generate` writes for the same settings (greedy, the same
``model.generate`` call through :func:`interventions.steering` with no edits); a streamer hands over
each new token and a hook on the reading layer hands over the residual of each token the model reads
back, so a token's reading arrives one step after the token itself. The last token, which the model
never reads back, and the user's turn are read by the clean pass of :func:`scope.read_conversation`
that ends every stream (the same numbers: the same model, the same positions).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from transformers import BatchEncoding, StoppingCriteria, StoppingCriteriaList

from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.activations import capture
from steerlab.model.chat import check_messages, format_chat
from steerlab.model.models import LoadedModel
from steerlab.read.scope import Reading, read_conversation
from steerlab.steer.generation import clean_reply
from steerlab.steer.interventions import steering


@dataclass(frozen=True)
class Event:
    kind: str  # "token" (text of a new token), "reading" (scores of token ``index``) or "done"
    index: int = -1
    text: str = ""
    scores: np.ndarray | None = None  # (emotions,) cosine at the reading layer
    reading: Reading | None = None  # "done": the clean re-read of the whole conversation
    reply: str = ""  # "done": the reply as ``generate`` returns it


class _Tokens:
    """A transformers streamer: the first call carries the prompt, every later one a new token."""

    def __init__(self, out: queue.Queue[tuple[str, object]]) -> None:
        self.out, self.prompt_seen = out, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.out.put(("token", int(value.reshape(-1)[0])))

    def end(self) -> None:
        self.out.put(("end", None))


class _Stop(StoppingCriteria):
    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: object) -> bool:
        return any(e.is_set() for e in self.events)


def check_chat(lm: LoadedModel, messages: Sequence[dict[str, str]], max_new_tokens: int) -> list[dict[str, str]]:
    """The conversation a reply is asked for: well-formed, ending in a user turn, within the context."""
    msgs = check_messages(list(messages))
    if msgs[-1]["role"] != "user" or not msgs[-1]["content"].strip():
        raise SteerlabError("empty message: write something for the model to answer")
    if not 1 <= max_new_tokens <= 1024:
        raise SteerlabError(f"max new tokens {max_new_tokens} must lie between 1 and 1024")
    text = format_chat(lm.tokenizer, msgs, add_generation_prompt=True).text
    lm.check_length(len(lm.tokenizer(text)["input_ids"]), "the conversation", max_new_tokens)
    return msgs


def stream_reply(
    lm: LoadedModel,
    vectors: EmotionVectors,
    messages: Sequence[dict[str, str]],
    max_new_tokens: int = 64,
    cancel: threading.Event | None = None,
) -> Iterator[Event]:
    """Events while the model answers ``messages`` greedily; ``cancel`` stops the generation."""
    msgs = check_chat(lm, messages, max_new_tokens)
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    layer, cancel, halt = vectors.reading_layer, cancel or threading.Event(), threading.Event()
    enc = lm.tokenizer([format_chat(lm.tokenizer, msgs, add_generation_prompt=True).text], return_tensors="pt")
    events: queue.Queue[tuple[str, object]] = queue.Queue()
    failure: list[BaseException] = []
    run = partial(_generate, lm, enc, layer, max_new_tokens, events, failure, _Stop(cancel, halt))
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        shown = yield from _stream(lm, vectors, layer, events)
    finally:
        halt.set()  # the consumer stopped listening: stop generating
        worker.join()
    if failure:
        raise failure[0]
    if cancel.is_set():
        return
    reply = clean_reply(lm, shown, chat=True)
    full = [*msgs, {"role": "assistant", "content": reply}] if reply else msgs
    yield Event("done", reading=read_conversation(lm, vectors, full), reply=reply)


def _generate(
    lm: LoadedModel,
    enc: BatchEncoding,
    layer: int,
    max_new_tokens: int,
    events: queue.Queue[tuple[str, object]],
    failure: list[BaseException],
    stop: _Stop,
) -> None:
    """The worker thread: generate greedily, putting each new token and each residual read on ``events``;
    an error is kept in ``failure`` for the consumer's thread to raise."""

    def read(_: int, hidden: torch.Tensor) -> None:
        events.put(("hidden", hidden[0, -1].detach().float().cpu()))

    try:
        with capture(lm, [layer], read), steering(lm) as model:
            model.generate(
                enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                top_p=None,
                top_k=None,
                pad_token_id=lm.tokenizer.pad_token_id,
                streamer=_Tokens(events),
                stopping_criteria=StoppingCriteriaList([stop]),
            )
    except BaseException as err:  # re-raised in the consumer's thread
        failure.append(err)
        events.put(("end", None))


def _stream(
    lm: LoadedModel, vectors: EmotionVectors, layer: int, events: queue.Queue[tuple[str, object]]
) -> Generator[Event, None, str]:
    """ "token" and "reading" events from the worker's queue until the reply ends; returns the text shown."""
    ids: list[int] = []
    shown, hidden_seen = "", 0
    while True:
        kind, value = events.get()
        if kind == "end":
            break
        if kind == "hidden":
            # The first hidden state is the prompt's last token; the k-th after it is token k-1's.
            if hidden_seen > 0 and hidden_seen - 1 < len(ids):
                yield Event("reading", hidden_seen - 1, scores=vectors.read(value, layer).numpy())  # type: ignore[arg-type]
            hidden_seen += 1
            continue
        ids.append(int(value))  # type: ignore[call-overload]
        text = str(lm.tokenizer.decode(ids, skip_special_tokens=True))
        reply = clean_reply(lm, text, chat=True)
        ended = len(reply) < len(text.strip())  # a plain transcript's turn ended inside this token
        end = len(text) - len(text.lstrip()) + len(reply) if ended else len(text)
        yield Event("token", len(ids) - 1, text=text[len(shown) : end])
        shown = text[:end]
        if ended:
            break
    return shown
