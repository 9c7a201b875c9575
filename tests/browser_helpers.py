"""A real headless browser (Debian's chromium + chromedriver through Selenium) against a real server.

Nothing is downloaded: the browser and driver are the installed ones (`apt-get install chromium
chromium-driver`), their paths are given to Selenium explicitly so Selenium Manager never runs.
Servers are LLaMA-Factory's own commands (`llamafactory-cli webchat` / `webui`) started as
subprocesses on 127.0.0.1 and a free port, stopped by the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"
START_TIMEOUT = 300  # seconds for a server to answer (import + model load on a busy 2-core machine)
LAUNCH_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver) or a pytest skip naming what is missing and how to install it."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need selenium: pip install -e '.[dev]'")
    browser = next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
    driver = shutil.which(CHROMEDRIVER)
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        pytest.skip(f"no {missing} installed: apt-get install -y chromium chromium-driver")
    return browser, driver


@contextmanager
def chromium(profile_dir: Path) -> Iterator["object"]:
    """A headless chromium driven by the installed chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in LAUNCH_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llamafactory_server(args: list[str], cwd: Path, log: Path) -> Iterator[str]:
    """`llamafactory-cli ARGS` serving gradio on 127.0.0.1:<free port>; yields the URL."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "BROWSER": "true",  # gradio's launch(inbrowser=True) opens nothing
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cli = str(Path(sys.executable).with_name("llamafactory-cli"))
    url = f"http://127.0.0.1:{port}/"
    with open(log, "wb") as out:
        proc = subprocess.Popen([cli, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_up(url, proc, log)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"server not up after {START_TIMEOUT}s:\n{log.read_text(errors='replace')[-4000:]}")
