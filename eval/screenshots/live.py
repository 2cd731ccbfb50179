"""The README's picture of the live view: serve the embedded model, chat once, compare once, screenshot.

    python eval/screenshots/live.py [--out eval/screenshots/live.png]

Needs the serve extra and Debian's chromium + chromium-driver (`make browser`).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.model.models import load_model
from steerlab.serve.app import create_app

MESSAGE = "I failed the qualifying exam for the second time. I don't see the point of trying again."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).with_name("live.png")))
    args = ap.parse_args()
    lm = load_model()
    vectors = load_vectors(shipped_vectors(lm.spec) or "")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(lm, vectors), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1250"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 600)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#emotion option"))
        driver.find_element(By.ID, "text").send_keys(MESSAGE)
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "points").text.count("reply"))
        Select(driver.find_element(By.ID, "emotion")).select_by_visible_text("hopeful")
        driver.find_element(By.ID, "text").send_keys(MESSAGE)
        driver.find_element(By.ID, "compare").click()
        wait.until(lambda d: d.find_element(By.ID, "change").text)
        driver.save_screenshot(args.out)
        print(f"wrote {args.out}")
    finally:
        driver.quit()
        server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
