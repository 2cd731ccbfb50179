"""Greedy generation in a real llama.cpp, with or without a steerlab control vector (optional extra
``steerlab[llamacpp]``: the ``xllamacpp`` wheel, whose library exports llama.cpp's C API).

The control vector is read from the exported GGUF with the ``gguf`` package and handed to
``llama_set_adapter_cvec`` in the layout llama.cpp's own loader builds (``direction.k`` -> row k-1 of
a (n_layer, n_embd) block, applied to the output of block k). Structs passed by value are given as
oversized opaque buffers filled by llama.cpp's own ``*_default_params``, so no field layout is assumed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steerlab.core.errors import SteerlabError

_P = ctypes.c_void_p


class _Params(ctypes.Structure):  # larger than llama_model_params / llama_context_params
    _fields_ = [("raw", ctypes.c_ubyte * 2048)]


class _Batch(ctypes.Structure):  # struct llama_batch
    _fields_ = [
        ("n_tokens", ctypes.c_int32),
        ("token", ctypes.POINTER(ctypes.c_int32)),
        ("embd", _P),
        ("pos", _P),
        ("n_seq_id", _P),
        ("seq_id", _P),
        ("logits", _P),
    ]


_LOG = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_quiet = _LOG(lambda level, text, data: None)


def _library() -> ctypes.CDLL:
    try:
        import xllamacpp
    except ImportError:
        raise SteerlabError("llama.cpp is not installed: pip install 'steerlab[llamacpp]'") from None
    lib = ctypes.CDLL(str(next(Path(xllamacpp.__file__).parent.glob("xllamacpp*.so"))))
    signatures = {
        "llama_log_set": (None, [_LOG, _P]),
        "llama_backend_init": (None, []),
        "llama_model_default_params": (_Params, []),
        "llama_context_default_params": (_Params, []),
        "llama_model_load_from_file": (_P, [ctypes.c_char_p, _Params]),
        "llama_init_from_model": (_P, [_P, _Params]),
        "llama_model_get_vocab": (_P, [_P]),
        "llama_model_n_embd": (ctypes.c_int32, [_P]),
        "llama_model_n_layer": (ctypes.c_int32, [_P]),
        "llama_vocab_n_tokens": (ctypes.c_int32, [_P]),
        "llama_vocab_is_eog": (ctypes.c_bool, [_P, ctypes.c_int32]),
        "llama_tokenize": (
            ctypes.c_int32,
            [
                _P,
                ctypes.c_char_p,
                ctypes.c_int32,
                ctypes.POINTER(ctypes.c_int32),
                ctypes.c_int32,
                ctypes.c_bool,
                ctypes.c_bool,
            ],
        ),
        "llama_token_to_piece": (
            ctypes.c_int32,
            [_P, ctypes.c_int32, ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_bool],
        ),
        "llama_batch_get_one": (_Batch, [ctypes.POINTER(ctypes.c_int32), ctypes.c_int32]),
        "llama_decode": (ctypes.c_int32, [_P, _Batch]),
        "llama_get_logits_ith": (ctypes.POINTER(ctypes.c_float), [_P, ctypes.c_int32]),
        "llama_set_adapter_cvec": (
            ctypes.c_int32,
            [_P, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32],
        ),
        "llama_free": (None, [_P]),
        "llama_model_free": (None, [_P]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    lib.llama_log_set(_quiet, None)
    lib.llama_backend_init()
    return lib


def read_control_vector(path: str | Path) -> dict[int, np.ndarray]:
    """{k: direction.k} from a control-vector GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {
        int(t.name.split(".")[1]): np.asarray(t.data, dtype=np.float32)
        for t in reader.tensors
        if t.name.startswith("direction.")
    }


class LlamaCpp:
    """One llama.cpp model and context; :meth:`generate` is greedy, with an optional control vector."""

    def __init__(self, gguf_path: str | Path) -> None:
        self.lib = _library()
        self.model = self.lib.llama_model_load_from_file(str(gguf_path).encode(), self.lib.llama_model_default_params())
        if not self.model:
            raise SteerlabError(f"llama.cpp cannot load {str(gguf_path)!r}: pass a GGUF model file")
        self.vocab = self.lib.llama_model_get_vocab(self.model)
        self.n_embd = int(self.lib.llama_model_n_embd(self.model))
        self.n_layer = int(self.lib.llama_model_n_layer(self.model))

    def close(self) -> None:
        self.lib.llama_model_free(self.model)

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode()
        buf = (ctypes.c_int32 * (len(raw) + 8))()
        n = self.lib.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, True)
        if n < 0:
            raise SteerlabError("llama.cpp could not tokenize the prompt")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    def generate(self, prompt: str, max_new_tokens: int, control: dict[int, np.ndarray] | None = None) -> str:
        """The greedy continuation of ``prompt``; ``control`` = {k: vector} added to block k's output."""
        ctx = self.lib.llama_init_from_model(self.model, self.lib.llama_context_default_params())
        try:
            if control:
                self._set_control(ctx, control)
            tokens = self.tokenize(prompt)
            out: list[bytes] = []
            n_vocab = int(self.lib.llama_vocab_n_tokens(self.vocab))
            ids = (ctypes.c_int32 * len(tokens))(*tokens)
            for _ in range(max_new_tokens):
                if self.lib.llama_decode(ctx, self.lib.llama_batch_get_one(ids, len(ids))) != 0:
                    raise SteerlabError("llama.cpp failed to decode")
                logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
                token = int(np.argmax(logits))
                if self.lib.llama_vocab_is_eog(self.vocab, token):
                    break
                out.append(self.piece(token))
                ids = (ctypes.c_int32 * 1)(token)
            return b"".join(out).decode("utf-8", errors="replace")
        finally:
            self.lib.llama_free(ctx)

    def _set_control(self, ctx: int, control: dict[int, np.ndarray]) -> None:
        bad = [k for k, v in control.items() if not 1 <= k < self.n_layer or v.shape != (self.n_embd,)]
        if bad:
            raise SteerlabError(
                f"control vector layers {bad} do not fit this model ({self.n_layer} layers, hidden size {self.n_embd})"
            )
        data = np.zeros((self.n_layer, self.n_embd), dtype=np.float32)
        for k, vector in control.items():
            data[k - 1] = vector  # llama.cpp's loader: direction.k is row k-1
        flat = np.ascontiguousarray(data.reshape(-1))
        pointer = flat.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if self.lib.llama_set_adapter_cvec(ctx, pointer, flat.size, self.n_embd, 1, self.n_layer - 1) != 0:
            raise SteerlabError("llama.cpp refused the control vector")


def greedy_replies(
    gguf_path: str | Path, prompts: Sequence[str], max_new_tokens: int, control: dict[int, np.ndarray] | None = None
) -> list[str]:
    runtime = LlamaCpp(gguf_path)
    try:
        return [runtime.generate(p, max_new_tokens, control) for p in prompts]
    finally:
        runtime.close()
