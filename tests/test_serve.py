"""The live view: the API through FastAPI's test client, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi", reason="the live view needs the serve extra (FastAPI, uvicorn)")
from fastapi.testclient import TestClient  # noqa: E402

from steerlab.core.names import SMOLLM2  # noqa: E402
from steerlab.core.vectors import EmotionVectors, load_vectors, shipped_vectors  # noqa: E402
from steerlab.model.models import LoadedModel, load_model  # noqa: E402
from steerlab.serve.app import create_app  # noqa: E402
from steerlab.steer.generation import GenerationConfig, clean_reply, generate  # noqa: E402

MESSAGE = "a day at the sea"


@pytest.fixture(scope="module")
def client(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> TestClient:
    return TestClient(create_app(tiny, tiny_vectors))


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_info(client: TestClient, tiny_vectors: EmotionVectors) -> None:
    info = client.get("/api/info").json()
    assert info["emotions"] == list(tiny_vectors.emotions)
    assert (info["reading_layer"], info["steering_layer"]) == (tiny_vectors.reading_layer, tiny_vectors.steering_layer)
    assert (
        "<script>" in client.get("/").text and "http" not in client.get("/").text.split("<script>")[1].split("fetch")[0]
    )


def test_streamed_tokens_are_the_reply_generate_writes(client: TestClient, tiny: LoadedModel) -> None:
    body = {"messages": [{"role": "user", "content": MESSAGE}], "max_new_tokens": 12}
    got = events(client.post("/api/chat", json=body).text)
    kinds = [k for k, _ in got]
    assert kinds[0] == "user" and kinds[-1] == "done"
    tokens = [d["text"] for k, d in got if k == "token"]
    expected = generate(tiny, [MESSAGE], GenerationConfig(max_new_tokens=12, chat=True))[0]
    assert clean_reply(tiny, "".join(tokens), chat=True) == expected == got[-1][1]["reply"]
    readings = [d for k, d in got if k == "reading"]
    assert readings and all(len(d["top"]) == 3 for d in readings)
    assert {t["role"] for t in got[0][1]["tokens"]} >= {"user"}
    assert set(got[-1][1]["points"]) >= {"prep", "user_last"}


def test_compare_payload(client: TestClient) -> None:
    body = {"message": MESSAGE, "emotion": "Joyful", "alpha": 4, "max_new_tokens": 6}  # names as the file has them
    data = client.post("/api/compare", json=body).json()
    assert (
        set(data["baseline"])
        == set(data["steered"])
        == {"text", "empty", "incoherent", "top", "target", "distinct2", "perplexity"}
    )
    assert data["layers"] and data["displacement"] > 0 and data["emotion"] == "joyful"


@pytest.mark.parametrize(("threshold", "fired"), [(-1e9, True), (1e9, False)])
def test_compare_with_a_gate(client: TestClient, threshold: float, fired: bool) -> None:
    body = {"message": MESSAGE, "emotion": "joyful", "alpha": 40, "max_new_tokens": 6, "when": "grim"}
    data = client.post("/api/compare", json={**body, "threshold": threshold}).json()
    gate = data["gate"]
    assert (gate["fired"], gate["threshold"], gate["emotion"], gate["source"]) == (fired, threshold, "grim", "given")
    assert isinstance(gate["reading"], float) and (gate["reading"] > threshold) == fired
    assert (data["steered"]["text"] == data["baseline"]["text"]) != fired
    assert client.post("/api/compare", json={**body, "when": ""}).json()["gate"] is None


@pytest.mark.slow
def test_live_view_on_the_built_in_assistant() -> None:
    """The live view with --model smollm2-135m-instruct: its chat template, its shipped vectors."""
    lm = load_model(SMOLLM2)
    client = TestClient(create_app(lm, load_vectors(shipped_vectors(SMOLLM2) or "")))
    message = "I lost my job today."
    got = events(client.post("/api/chat", json={"messages": [{"role": "user", "content": message}]}).text)
    expected = generate(lm, [message], GenerationConfig(max_new_tokens=48, chat=True))[0]
    assert got[-1][1]["reply"] == expected and expected
    body = {"message": message, "emotion": "hopeful", "alpha": 4, "max_new_tokens": 24}
    data = client.post("/api/compare", json=body).json()
    assert data["displacement"] > 0 and data["steered"]["text"] != data["baseline"]["text"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/api/chat", {"messages": [{"role": "user", "content": "  "}]}, "empty"),
        ("/api/chat", {"messages": [{"role": "user", "content": "word " * 600}]}, "context"),
        ("/api/chat", {"messages": [{"role": "robot", "content": "x"}]}, "robot"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyfull"}, "did you mean 'joyful'"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyful", "alpha": 1e30}, "alpha"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyful", "layers": "9"}, "out of range"),
        ("/api/compare", {"message": "", "emotion": "joyful"}, "empty"),
        ("/api/compare", {"emotion": "joyful"}, "message: Field required"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyful", "alpha": "lots"}, "alpha"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyful", "when": "grim"}, "no calibrated gate threshold"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyful", "when": "grum", "threshold": 1}, "unknown emotion"),
        ("/api/compare", {"message": MESSAGE, "emotion": "joyful", "when": "grim", "threshold": "x"}, "threshold"),
    ],
)
def test_bad_input_is_a_message_not_a_server_error(client: TestClient, path: str, body: dict, needle: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]


def test_malformed_requests_get_the_one_line_body(client: TestClient) -> None:
    broken = client.post("/api/compare", content="{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"].startswith("request body: JSON decode error")
    for response, status in ((client.get("/api/nothing"), 404), (client.get("/api/compare"), 405)):
        assert response.status_code == status and set(response.json()) == {"error"}
        assert "/api/info" in response.json()["error"]


def test_non_finite_alpha_is_refused(client: TestClient) -> None:
    # JSON has no NaN; Python's encoder writes it anyway, as a client might.
    response = client.post(
        "/api/compare",
        content='{"message": "hi", "emotion": "joyful", "alpha": NaN}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "alpha" in response.json()["error"]  # steerlab's body, never a 422


def test_one_generation_at_a_time(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    app = create_app(tiny, tiny_vectors)
    client = TestClient(app)
    with app.state.busy:
        response = client.post("/api/compare", json={"message": MESSAGE, "emotion": "joyful"})
    assert response.status_code == 409 and "busy" in response.json()["error"]


# --- the page in a real browser ---------------------------------------------------------------

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(tiny, tiny_vectors), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    instance.should_exit = True
    thread.join(timeout=10)


def _element_says(by: str, name: str, text: str) -> Callable[[Any], bool]:
    return lambda driver: text in driver.find_element(by, name).text


@pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM), reason="needs Debian's chromium and chromium-driver (make browser)"
)
def test_page_in_headless_chromium(server: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)  # no driver download
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#emotion option"))
        driver.find_element(By.ID, "tokens").clear()
        driver.find_element(By.ID, "tokens").send_keys("8")
        driver.find_element(By.ID, "text").send_keys(MESSAGE)
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".turn.assistant .tok[data-emotion]"))
        wait.until(lambda d: not d.find_element(By.ID, "go").get_attribute("disabled"))
        coloured = driver.find_elements(By.CSS_SELECTOR, ".turn.user .tok[data-emotion]")
        assert coloured and coloured[0].get_attribute("title")
        assert driver.find_element(By.ID, "points").text.count("prep")
        driver.find_element(By.ID, "compare").click()
        wait.until(lambda d: d.find_element(By.ID, "change").text)
        assert "change in" in driver.find_element(By.ID, "change").text
        assert driver.find_element(By.ID, "base-info").text and driver.find_element(By.ID, "steered-info").text
        assert not driver.find_element(By.ID, "gate").text  # no gate chosen: none shown
        for threshold, verdict in (("1e9", "did not fire"), ("-1e9", "fired")):  # the gate as a control
            Select(driver.find_element(By.ID, "when")).select_by_value("grim")
            driver.find_element(By.ID, "threshold").clear()
            driver.find_element(By.ID, "threshold").send_keys(threshold)
            driver.find_element(By.ID, "compare").click()
            wait.until(_element_says(By.ID, "gate", f"gate {verdict}:"))
            shown = driver.find_element(By.ID, "gate").text
            assert "grim" in shown and "given threshold" in shown and "reads" in shown
            wait.until(lambda d: not d.find_element(By.ID, "compare").get_attribute("disabled"))
        assert "grim (give a threshold)" in driver.find_element(By.ID, "when").text  # tiny vectors: none calibrated
        driver.find_element(By.ID, "text").clear()
        driver.find_element(By.ID, "text").send_keys("   ")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "message").text)
        assert "empty" in driver.find_element(By.ID, "message").text
    finally:
        driver.quit()
