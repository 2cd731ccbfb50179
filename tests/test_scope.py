"""steerlab scope: token reading, speakers, readout points, dual speaker, geometry, intensity, report."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from steerlab.cli import cli
from steerlab.core.corpus import data_path
from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors, save_vectors
from steerlab.model.activations import pad_batch, token_activations
from steerlab.model.models import LoadedModel
from steerlab.read.dual_speaker import dual_speaker, load_dialogues
from steerlab.read.geometry import geometry, vector_geometry
from steerlab.read.intensity import POINTS, intensity, load_scales
from steerlab.read.scope import (
    ScopeConfig,
    generate_reply,
    load_conversation,
    read_conversation,
    read_text,
)
from steerlab.report import plots
from steerlab.report.page import ReportConfig, build_report
from steerlab.report.plots import plot_scope

from .conftest import REPO, SHIPPED

CONV = [
    {"role": "user", "content": "I am so scared tonight."},
    {"role": "assistant", "content": "You are safe here."},
]
GEMMA_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# EmotionScope's data beside the checkout, as the benchmarks' --external (skipped when absent)
EXTERNAL = REPO.parent / "shared" / "external" / "emotionscope" / "intensity_scales.json"


def with_template(lm: LoadedModel) -> LoadedModel:
    tok = copy.deepcopy(lm.tokenizer)
    tok.chat_template = GEMMA_TEMPLATE
    return dataclasses.replace(lm, tokenizer=tok)


def dialogue_vectors(lm: LoadedModel) -> EmotionVectors:
    """Random unit directions for the dialogue emotions, so role grid and thermostat run on tiny."""
    emotions = tuple(sorted({d.user_emotion for d in load_dialogues()} - {"neutral"}))
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(lm.n_layers, len(emotions), lm.hidden_size, generator=gen)
    zeros = torch.zeros(lm.n_layers, len(emotions))
    return EmotionVectors(
        emotions=emotions,
        directions=d / d.norm(dim=-1, keepdim=True),
        raw_norms=zeros + 1,
        center=torch.zeros(lm.n_layers, lm.hidden_size),
        alpha_unit=torch.ones(lm.n_layers),
        token_norm=torch.ones(lm.n_layers),
        probe_weight=d.clone(),
        probe_bias=zeros,
        meta={"chosen_layer": 2, "reading_layer": 1, "model_id": lm.model_id, "model_spec": lm.spec},
    )


# --- reading -------------------------------------------------------------------------------------


def test_scores_align_one_to_one_with_tokens(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    text = "sun and cake, then rain"
    r = read_text(tiny, tiny_vectors, text, ScopeConfig(layers=(1, 3)))
    assert r.scores.shape == (2, len(r.tokens), len(tiny_vectors.emotions))
    assert len(r.tokens) == len(r.offsets) == len(r.roles) == len(r.turns) == len(text)  # byte tokenizer, BOS dropped
    assert "".join(r.tokens) == text
    assert all(text[s:e] == tok for tok, (s, e) in zip(r.tokens, r.offsets, strict=True))
    ids = tiny.tokenizer(text)["input_ids"]
    acts = token_activations(tiny, pad_batch(tiny, [ids]), [3])[3][0, 1:]
    np.testing.assert_allclose(r.layer_scores(3), tiny_vectors.read(acts, 3).numpy(), atol=1e-6)
    assert np.all(np.abs(r.scores) <= 1 + 1e-6)
    assert 0 < r.noise_floor[0] < 1
    assert r.points == {"last": (len(text) - 1,), "mean": tuple(range(len(text)))}
    js = r.to_json()
    assert len(js["tokens"]) == len(text) and set(js["tokens"][0]) >= {"position", "token", "role", "turn", "scores"}
    json.dumps(js)


def test_speakers_follow_the_plain_transcript(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    r = read_conversation(tiny, tiny_vectors, CONV)
    assert r.template == "plain" and r.text == "User: I am so scared tonight.\n\nAssistant: You are safe here."
    for role, msg in zip(("user", "assistant"), CONV, strict=True):
        assert "".join(t for t, ro in zip(r.tokens, r.roles, strict=True) if ro == role) == msg["content"]
    assert "".join(t for t, ro in zip(r.tokens, r.roles, strict=True) if ro == "template") == "User: \n\nAssistant: "
    assert [r.turns[i] for i, ro in enumerate(r.roles) if ro == "assistant"] == [1] * len(CONV[1]["content"])
    prep, user_last = r.points["prep"][0], r.points["user_last"][0]
    assert "".join(r.tokens[prep - 9 : prep + 1]) == "Assistant:"
    assert r.tokens[user_last] == "." and r.roles[user_last] == "user"
    assert [r.tokens[p] for p in r.points["reply"]] == list(CONV[1]["content"])
    assert [t for t, _, _ in r.turn_means()] == [0, 1]


@pytest.mark.parametrize("templated", [False, True])
def test_response_position_matches_the_generation_prompt(
    tiny: LoadedModel, tiny_vectors: EmotionVectors, templated: bool
) -> None:
    lm = with_template(tiny) if templated else tiny
    full = read_conversation(lm, tiny_vectors, CONV)
    open_ended = read_conversation(lm, tiny_vectors, CONV[:1])
    prep = full.points["prep"][0]
    assert open_ended.points["prep"] == (len(open_ended.tokens) - 1,)
    assert prep == open_ended.points["prep"][0]  # the prompt is a prefix of the full conversation
    np.testing.assert_allclose(full.layer_scores()[prep], open_ended.layer_scores()[prep], atol=1e-5)  # causal
    assert full.roles[prep] == "template" and full.roles[prep + 1 :][: len(CONV[1]["content"])].count("assistant") >= 1
    if templated:
        assert full.template == "chat_template"
        assert "".join(full.tokens[: prep + 1]).endswith("<start_of_turn>model\n")
        assert full.tokens[prep + 1] == "Y" and full.roles[prep + 1] == "assistant"
        assert "user_last" in full.points and full.tokens[full.points["user_last"][0]] == "."
    else:
        assert "".join(full.tokens[: prep + 1]).endswith("Assistant:")


def test_generate_then_read(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    msgs = generate_reply(tiny, CONV[:1], max_new_tokens=6)
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["content"]
    r = read_conversation(tiny, tiny_vectors, msgs)
    assert set(r.points) == {"prep", "user_last", "reply"}
    with pytest.raises(SteerlabError, match="ends with a user turn"):
        generate_reply(tiny, CONV)


def test_bad_input_is_one_clear_error(tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    with pytest.raises(SteerlabError, match="empty text"):
        read_text(tiny, tiny_vectors, "   ")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"role": "user", "content": "hi"},]')
    with pytest.raises(SteerlabError, match=r"malformed JSON at line 1"):
        load_conversation(bad)
    bad.write_text('[{"role": "narrator", "content": "hi"}]')
    with pytest.raises(SteerlabError, match="unknown role 'narrator'"):
        load_conversation(bad)
    bad.write_text('{"role": "user"}')
    with pytest.raises(SteerlabError, match="non-empty JSON list"):
        load_conversation(bad)
    with pytest.raises(SteerlabError, match="refusing"):
        read_text(tiny, tiny_vectors, "x" * 600)  # tiny context is 512 positions
    with pytest.raises(SteerlabError, match="layer 9 is out of range: use 0-3"):
        read_text(tiny, tiny_vectors, "hello", ScopeConfig(layers=(9,)))


def reading_at(vectors: EmotionVectors, reading: int, steering: int) -> EmotionVectors:
    return dataclasses.replace(vectors, meta={**vectors.meta, "chosen_layer": steering, "reading_layer": reading})


def rain_scale(folder: Path, values: list[int], expect: dict[str, str]) -> Path:
    """A one-scale intensity file in steerlab's format."""
    path = folder / "s.json"
    scale = {"name": "rain", "template": "It rained for {x} days.", "values": values, "expect": expect}
    path.write_text(json.dumps({"scales": [scale]}))
    return path


def test_analyses_default_to_the_reading_layer(tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    vectors = reading_at(tiny_vectors, reading=3, steering=1)
    assert (vectors.reading_layer, vectors.steering_layer) == (3, 1)
    assert read_text(tiny, vectors, "sun and rain").layers == (3,)
    assert vector_geometry(vectors).layer == 3
    path = rain_scale(tmp_path, [1, 2, 5], {"grim": "+"})
    assert intensity(tiny, vectors, load_scales(path)).layer == 3
    with pytest.raises(SteerlabError, match="layer 7 is out of range"):
        vector_geometry(vectors, 7)
    with pytest.raises(SteerlabError, match="layer -1 is out of range"):
        intensity(tiny, vectors, load_scales(path), layer=-1)


# --- geometry, intensity, dual speaker --------------------------------------------------------------


def test_geometry_recovers_planted_axes() -> None:
    rng = np.random.default_rng(0)
    n, hidden = 16, 96
    valence, arousal = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n) * 0.6
    basis = np.linalg.qr(rng.normal(size=(hidden, 2)))[0].T
    dirs = valence[:, None] * basis[0] + arousal[:, None] * basis[1] + 0.02 * rng.normal(size=(n, hidden))
    g = geometry(dirs, [f"e{i}" for i in range(n)], valence.tolist(), arousal.tolist(), layer=3)
    assert g.r["pc1_valence"].r > 0.99 and g.r["pc1_valence"].p < 1e-6
    assert g.r["pc2_arousal"].r > 0.99
    assert abs(g.r["pc1_arousal"].r) < 0.6 and g.explained[0] > g.explained[1]
    assert list(g.order) == list(np.argsort(-valence))
    assert g.cosine.shape == (n, n) and np.allclose(np.diag(g.cosine), 1)
    with pytest.raises(SteerlabError, match="geometry needs"):
        geometry(dirs[:2], ["a", "b"], [1, -1], [0, 0])


def test_scales_load_both_formats(tmp_path: Path) -> None:
    own = load_scales()
    assert data_path("intensity_scales.json").is_file() and not (REPO / "eval" / "intensity").exists()
    assert [s.name for s in own] == [s.name for s in load_scales(data_path("intensity_scales.json"))]
    assert len(own) >= 4 and all(s.is_message and "{x}" in s.template and s.expect for s in own)
    ext = tmp_path / "ext.json"
    ext.write_text(
        json.dumps(
            {
                "dog": {
                    "template": "User: My dog has been missing {value} days.\n\nAssistant:",
                    "values": [1, 3, 7],
                    "expected_increasing": ["sad"],
                    "expected_decreasing": ["calm"],
                }
            }
        )
    )
    (scale,) = load_scales(ext)
    assert scale.expect == {"sad": 1, "calm": -1} and not scale.is_message and scale.values == ("1", "3", "7")
    if EXTERNAL.is_file():
        assert len(load_scales(EXTERNAL)) >= 4
    ext.write_text('{"scales": [{"name": "x"}]}')
    with pytest.raises(SteerlabError, match="not a scales file"):
        load_scales(ext)


def test_intensity_on_tiny(tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    path = rain_scale(tmp_path, [1, 2, 5, 9], {"grim": "+", "joyful": "-", "happy": "+"})
    result = intensity(tiny, tiny_vectors, load_scales(path))
    assert [(r.point, r.emotion, r.expected, r.n) for r in result.rows] == [
        (p, e, sign, 4) for e, sign in (("grim", 1), ("joyful", -1)) for p in POINTS
    ]
    assert result.skipped == ("rain:happy",)
    assert all(-1 <= r.rho <= 1 for r in result.rows)
    assert {p: s["relations"] for p, s in result.summaries().items()} == dict.fromkeys(POINTS, 2)
    # the readout points are scope's: the same scores as reading the conversation
    (scale,) = load_scales(path)
    for k, value in enumerate(scale.values):
        message = scale.template.replace("{x}", value)
        reading = read_conversation(tiny, tiny_vectors, [{"role": "user", "content": message}])
        grim = tiny_vectors.index("grim")
        layer = reading.layers.index(result.layer)
        for point in ("prep", "user_last"):
            expected = reading.readout(point, result.layer)[grim]
            assert np.isclose(result.curves[point]["rain"][1]["grim"][k], expected, atol=1e-4), (point, k)
        user = [i for i, r in enumerate(reading.roles) if r == "user"]
        assert np.isclose(
            result.curves["user_mean"]["rain"][1]["grim"][k], reading.scores[layer, user, grim].mean(), atol=1e-4
        )


def test_dual_speaker_on_tiny(tiny: LoadedModel) -> None:
    vectors = dialogue_vectors(tiny)
    ds = dual_speaker(tiny, vectors, load_dialogues()[:24], batch_size=8)
    assert ds.layer == vectors.reading_layer == 1 and vectors.steering_layer == 2
    e = len(ds.emotions)
    assert ds.current.shape == ds.other.shape == (e, tiny.hidden_size)
    assert ds.cos.shape == (e,) and ds.mismatched.shape == (e * (e - 1),)
    assert np.all(np.abs(ds.cos) <= 1 + 1e-9) and len(ds.by_layer) == tiny.n_layers
    assert ds.role_grid_n.min() > 0 and np.isfinite(ds.role_grid).all()
    assert set(ds.thermostat) == {"labelled", "read", "script", "partial"}
    assert ds.thermostat["labelled"].n == sum(d.user_emotion != "neutral" for d in load_dialogues()[:24])
    assert np.isfinite(ds.with_vectors).all()


def test_dialogue_data_covers_every_emotion_on_both_sides() -> None:
    dialogues = load_dialogues()
    users = {d.user_emotion for d in dialogues} - {"neutral"}
    assistants = {d.assistant_emotion for d in dialogues} - {"neutral"}
    assert len(users) == 20 and users == assistants


def test_dialogue_file_errors_name_the_line(tmp_path: Path) -> None:
    good = data_path("dialogues.jsonl").read_text().splitlines()[0]
    path = tmp_path / "d.jsonl"
    path.write_text(good + "\n\n" + json.dumps({"id": "x", "user_emotion": "calm", "assistant_emotion": "calm"}) + "\n")
    with pytest.raises(SteerlabError, match=r"line 3: bad dialogue .*needs id, user_emotion, assistant_emotion, turns"):
        load_dialogues(path)
    path.write_text(good + "\n{not json\n")
    with pytest.raises(SteerlabError, match="line 2: malformed JSON"):
        load_dialogues(path)
    path.write_text("\n")
    with pytest.raises(SteerlabError, match="no dialogues"):
        load_dialogues(path)
    with pytest.raises(SteerlabError, match="cannot read dialogue file"):
        load_dialogues(tmp_path / "missing.jsonl")


# --- figures, report, CLI -----------------------------------------------------------------------------


def test_scope_plot_is_written(tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    r = read_conversation(tiny, tiny_vectors, CONV)
    out = plot_scope(r, tmp_path / "scope.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("n_words", [4, 90])
def test_scope_plot_token_labels_are_readable(
    tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_words: int
) -> None:
    figures = []
    close = plots.plt.close

    def keep(fig: Any) -> None:
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plots.plt, "close", keep)
    r = read_text(tiny, tiny_vectors, " ".join(["rain"] * n_words))  # byte tokens: ~5 per word
    plot_scope(r, tmp_path / "scope.png")
    (fig,) = figures
    width = fig.get_size_inches()[0]
    heatmap = fig.axes[1]
    labels = heatmap.get_xticklabels()
    assert 8 <= width <= 24 and (n_words == 4 or width == 24)
    assert all(t.get_fontsize() >= 8 for t in labels + heatmap.get_yticklabels())
    assert len(labels) * 0.15 <= width  # thinned so that labels do not overlap
    assert len(labels) == len(r.tokens) or n_words > 4


@pytest.fixture(scope="module")
def tiny_report(tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the tiny model, reading at layer 3 and steering at layer 1."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    ext = EXTERNAL if EXTERNAL.is_file() else None
    dialogues = out.with_name("dialogues.jsonl")  # a subset keeps the test fast
    from steerlab.core.corpus import data_path

    dialogues.write_text("\n".join(data_path("dialogues.jsonl").read_text().splitlines()[::4]) + "\n")
    config = ReportConfig(external_scales=str(ext) if ext else None, max_new_tokens=6, dialogues=str(dialogues))
    path, numbers = build_report(tiny, reading_at(tiny_vectors, reading=3, steering=1), out, config)
    assert "dual_speaker" in numbers and "geometry" in numbers
    assert (numbers["reading_layer"], numbers["steering_layer"]) == (3, 1) and "chosen_layer" not in numbers
    assert numbers["dual_speaker"]["layer"] == 3
    return path


def test_report_builds_from_the_tiny_model(tiny_report: Path) -> None:
    page = tiny_report.read_text()
    imgs = re.findall(r'<img src="([^"]{0,40})', page)
    assert len(imgs) >= 6 and all(src.startswith("data:image/png;base64,") for src in imgs)
    for section in ("Layer sweep", "Geometry", "Intensity scales", "Dual speaker", "Scope examples", "Random weights"):
        assert section in page
    assert page.count("<table>") >= 5
    assert "<th>p &lt; 0.05</th>" in page and "&amp;lt;" not in page  # escaped once, not twice
    assert "reading layer 3 (steering layer 1)" in page
    assert not re.search(r'(src|href)="https?:', page)  # self-contained: nothing fetched


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(tiny_report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    probe = tmp_path / "probe.html"
    check = (
        "<script>window.addEventListener('load',()=>{const im=[...document.images];"
        "document.body.setAttribute('data-check',im.length+':'+im.filter(i=>i.naturalWidth>100).length+':'"
        "+document.querySelectorAll('table tr').length)})</script>"
    )
    probe.write_text(tiny_report.read_text().replace("</body>", check + "</body>"))
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    ]
    try:
        dom = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"chromium could not run here: {err}")
    found = re.search(r'data-check="(\d+):(\d+):(\d+)"', dom)
    if found is None:
        pytest.skip("chromium ran but returned no DOM (sandboxed environment)")
    n_img, n_ok, n_rows = map(int, found.groups())
    assert n_img >= 6 and n_ok == n_img, "every figure decodes to a real image"
    assert n_rows > 20


def test_cli_scope_json_and_errors(tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    vec = save_vectors(tiny_vectors, tmp_path / "v.safetensors")
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(CONV))
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "scope",
            "--conversation",
            str(conv),
            "--vectors",
            str(vec),
            "--model",
            "random:tiny-gemma2",
            "--json",
            "--layers",
            "1,3",
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["layers"] == [1, 3] and set(obj["points"]) == {"prep", "user_last", "reply"}
    assert (tmp_path / "p.png").exists()
    res = runner.invoke(cli, ["scope", "sun and rain", "--vectors", str(vec), "--model", "random:tiny-gemma2"])
    assert res.exit_code == 0 and "readout points" in res.stdout
    conv.write_text('[{"role": "robot", "content": "beep"}]')
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from steerlab.cli import main; main()",
            "scope",
            "--conversation",
            str(conv),
            "--vectors",
            str(vec),
            "--model",
            "random:tiny-gemma2",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "unknown role 'robot'" in proc.stderr


def test_cli_scope_module_imports_only_click_at_top_level() -> None:
    """``steerlab --help`` must not pay for torch: the scope commands import steerlab's modules lazily."""
    tree = ast.parse((REPO / "steerlab" / "cli" / "scope.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {"." * n.level + (n.module or "") for n in top if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "json", "typing", "click", "steerlab.cli.common"}, names


# --- the real embedded model (slow) ---------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_transcript_readout_points(embedded: LoadedModel) -> None:
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped vectors at {SHIPPED}: run `steerlab extract --out {SHIPPED}`")
    from steerlab.core.vectors import load_vectors

    vectors = load_vectors(SHIPPED)
    r = read_conversation(
        embedded,
        vectors,
        [
            {"role": "user", "content": "I have lost everything and I am begging you, please help me."},
            {"role": "assistant", "content": "There is still a way forward, and we can find it together."},
        ],
    )
    prep = r.points["prep"][0]
    assert r.tokens[prep - 1 : prep + 1] == ("Assistant", ":")
    assert r.tokens[r.points["user_last"][0]] == "." and r.roles[prep + 1] == "assistant"
    assert 0 < r.noise_floor[0] < 0.2 and np.abs(r.scores).max() <= 1
