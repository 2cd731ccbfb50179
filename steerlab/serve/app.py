"""``steerlab serve``: a local web page to chat with the model and watch both turns' emotions token by
token, and to compare a steered reply with the baseline. The app only calls the library
(:func:`live.stream_reply`, :func:`comparison.compare`, :func:`scope.read_conversation`); every page
asset is package data, so it works offline. One generation runs at a time; a closed page cancels its own.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import AsyncIterator, Generator
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException

from steerlab.core.checks import finite
from steerlab.core.corpus import data_path
from steerlab.core.errors import SteerlabError
from steerlab.core.names import POSITIONS, check_positions
from steerlab.core.vectors import EmotionVectors
from steerlab.model.chat import prompt_text
from steerlab.model.models import LoadedModel
from steerlab.model.sites import parse_layers
from steerlab.read.comparison import compare
from steerlab.read.gate import Gate, gate_for
from steerlab.read.scope import Reading, read_conversation
from steerlab.serve.live import check_chat, stream_reply
from steerlab.steer.generation import GenerationConfig
from steerlab.validate.measure import distinct2, reply_perplexity

BUSY = "busy: the model is answering another request; wait for it to finish"


class Chat(BaseModel):
    messages: list[dict[str, str]]
    max_new_tokens: int = Field(default=48)


class Steer(BaseModel):
    message: str
    emotion: str
    alpha: float = 4.0
    mode: str = "add"  # add | ablate | clamp
    layers: str = ""  # "" = the steering layer; "8", "6-10", "3,5"
    positions: str = "all"
    max_new_tokens: int = 48
    when: str = ""  # gate: steer only when the user's message reads this emotion ("" = always)
    threshold: float | None = None  # the gate's threshold; None = the vector file's calibrated one


def top(emotions: tuple[str, ...], scores: np.ndarray | None, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` strongest emotions, strongest first; emotions a reader does not read are left out."""
    from steerlab.core.display import strongest

    return [(e, round(s, 4)) for e, s in strongest(emotions, scores, k)]


def reading_payload(r: Reading) -> dict[str, Any]:
    scores = r.layer_scores()
    return {
        "layer": r.layers[0],
        "noise_floor": round(float(r.noise_floor[0]), 4),
        "tokens": [
            {"text": t, "role": r.roles[i], "turn": r.turns[i], "top": top(r.emotions, scores[i])}
            for i, t in enumerate(r.tokens)
        ],
        "points": {name: top(r.emotions, r.readout(name)) for name in r.points},
        "turns": [{"turn": i, "role": role, "top": top(r.emotions, mean)} for i, role, mean in r.turn_means()],
    }


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, allow_nan=False)}\n\n"


def _error(err: Exception, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(err)}, status_code=status)


def create_app(lm: LoadedModel, vectors: EmotionVectors) -> FastAPI:
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    app = FastAPI(title="steerlab live", docs_url=None, redoc_url=None)
    busy = app.state.busy = threading.Lock()  # one generation at a time

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        where = "request body" if first.get("type") == "json_invalid" else where  # its loc is a character offset
        return _error(SteerlabError(f"{where}: {first.get('msg', 'invalid')}: see /api/info for the fields"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:  # 404, 405: one line too
        api = "the API is GET /api/info, POST /api/chat and /api/compare"
        return _error(SteerlabError(f"{request.method} {request.url.path}: {err.detail}: {api}"), err.status_code)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return data_path("live.html").read_text(encoding="utf-8")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return _info(lm, vectors)

    @app.post("/api/chat")
    async def chat(body: Chat, request: Request) -> Any:
        try:
            messages = check_chat(lm, body.messages, body.max_new_tokens)
        except SteerlabError as err:
            return _error(err)
        if not busy.acquire(blocking=False):
            return _error(SteerlabError(BUSY), 409)
        return StreamingResponse(
            _chat_events(lm, vectors, messages, body.max_new_tokens, request, busy), media_type="text/event-stream"
        )

    @app.post("/api/compare")
    def steer(body: Steer) -> Any:
        if not busy.acquire(blocking=False):
            return _error(SteerlabError(BUSY), 409)
        try:
            return _compare(lm, vectors, body)
        except SteerlabError as err:
            return _error(err)
        finally:
            busy.release()

    return app


def _info(lm: LoadedModel, vectors: EmotionVectors) -> dict[str, Any]:
    """What the page needs to know: the model, the emotions, the layers, the reader and the gates."""
    return {
        "model": lm.spec,
        "emotions": list(vectors.emotions),
        "reading_layer": vectors.reading_layer,
        "steering_layer": vectors.steering_layer,
        "n_layers": vectors.n_layers,
        "reader": vectors.default_reader,
        "positions": list(POSITIONS),
        "context_length": lm.context_length,
        "random_weights": bool(lm.is_random),
        "gates": {e: g["threshold"] for e, g in (vectors.meta.get("gates") or {}).items()},
    }


async def _chat_events(
    lm: LoadedModel,
    vectors: EmotionVectors,
    messages: list[dict[str, str]],
    max_new_tokens: int,
    request: Request,
    busy: threading.Lock,
) -> AsyncIterator[str]:
    """The reply as server-sent events (the user's turn read, each token, each token's reading, the clean
    re-read when done); a closed page cancels the generation. Releases ``busy`` (held by the caller) at the end."""
    cancel = threading.Event()

    def events() -> Generator[str, None, None]:
        yield _sse("user", reading_payload(read_conversation(lm, vectors, messages)))
        for event in stream_reply(lm, vectors, messages, max_new_tokens, cancel):
            if event.kind == "token":
                yield _sse("token", {"i": event.index, "text": event.text})
            elif event.kind == "reading":
                yield _sse("reading", {"i": event.index, "top": top(vectors.emotions, event.scores)})
            elif event.reading is not None:
                yield _sse("done", {"reply": event.reply, **reading_payload(event.reading)})

    source = events()
    try:
        async for chunk in iterate_in_threadpool(source):
            if await request.is_disconnected():
                cancel.set()  # the page was closed: stop generating
                break
            yield chunk
    except SteerlabError as err:
        yield _sse("error", {"error": str(err)})
    finally:
        cancel.set()
        await run_in_threadpool(source.close)
        busy.release()


def _compare(lm: LoadedModel, vectors: EmotionVectors, body: Steer) -> dict[str, Any]:
    """Baseline and steered replies to one message, both re-read by the clean model, with coherence."""
    vectors.index(body.emotion)
    if body.mode not in ("add", "ablate", "clamp"):
        raise SteerlabError(f"unknown mode {body.mode!r}: use add, ablate or clamp")
    finite(body.alpha, "alpha")
    positions = check_positions(body.positions)
    check_chat(lm, [{"role": "user", "content": body.message}], body.max_new_tokens)
    layers = parse_layers(body.layers, vectors.n_layers) if body.layers.strip() else None
    edit = _edit(body)
    config = GenerationConfig(max_new_tokens=body.max_new_tokens, chat=True)
    gate = _gate(vectors, body)
    (row,) = compare(
        lm,
        vectors,
        [body.message],
        layers=layers,
        positions=positions,
        config=config,
        gate=gate,
        **edit,
    )
    context = prompt_text(lm.tokenizer, body.message, chat=True)
    ppl = reply_perplexity(lm, [context] * 2, [row.baseline, row.steered])
    t = vectors.index(body.emotion)
    change = float(row.steered_scores[t] - row.baseline_scores[t])
    return {
        "emotion": vectors.emotions[t],  # the file's spelling: "Hopeful" is stored as "hopeful"
        "mode": body.mode,
        "alpha": body.alpha,
        "layers": list(row.layers),
        "displacement": round(row.displacement, 2),
        "reader": vectors.default_reader,
        "reading_layer": vectors.reading_layer,
        "baseline": _side(lm, vectors, t, row.baseline, row.baseline_scores, ppl[0], row.baseline_incoherent),
        "steered": _side(lm, vectors, t, row.steered, row.steered_scores, ppl[1], row.steered_incoherent),
        "change": round(change, 4) if math.isfinite(change) else None,
        "gate": None
        if gate is None or row.gate is None
        else {**row.gate.to_json(), "emotion": gate.emotion, "source": gate.source, "reader": gate.reader},
    }


def _edit(body: Steer) -> dict[str, Any]:
    """The panel's edit as :func:`comparison.compare`'s keyword argument."""
    edits: dict[str, dict[str, Any]] = {
        "add": {"add": {body.emotion: body.alpha}},
        "ablate": {"ablate": [body.emotion]},
        "clamp": {"clamp": {body.emotion: body.alpha}},
    }
    return edits[body.mode]


def _side(
    lm: LoadedModel,
    vectors: EmotionVectors,
    target: int,
    text: str,
    scores: np.ndarray,
    perplexity: float,
    broken: bool,
) -> dict[str, Any]:
    """One reply with its reading: top emotions, the ``target`` emotion's score, distinct-2 and perplexity."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    score = float(scores[target])
    return {
        "text": text,
        "empty": not text.strip(),
        "incoherent": broken,
        "top": top(vectors.emotions, scores),
        "target": round(score, 4) if math.isfinite(score) else None,
        "distinct2": round(distinct2(ids), 3) if len(ids) > 1 else None,
        "perplexity": round(float(perplexity), 2) if math.isfinite(perplexity) else None,
    }


def _gate(vectors: EmotionVectors, body: Steer) -> Gate | None:
    """The panel's gate: none, the file's calibrated one, or one at the threshold given."""
    if not body.when.strip():
        return None
    if body.threshold is None:
        return gate_for(vectors, body.when)
    if not math.isfinite(body.threshold):
        raise SteerlabError(f"gate threshold {body.threshold} is not a finite number: e.g. 0.2, or leave it empty")
    return gate_for(vectors, f"{body.when.strip()}>{body.threshold!r}")
