"""End to end in a real browser: `streamlit run` on a free local port, driven by headless Chromium.

Uses Playwright with Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``); Playwright
never downloads a browser of its own. The test goes from the synthetic sample to the results and
the PDF report download, and saves a screenshot (and the PDF) under ``artifacts/``.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Generous: the first Analyse loads (and warms up) the models inside the server.
RESULT_TIMEOUT_MS = 420_000



def chromium_path() -> Path | None:
    found = CHROMIUM if CHROMIUM.exists() else (Path(p) if (p := shutil.which("chromium")) else None)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not become healthy at {url} within {timeout:.0f} s")


@contextmanager
def streamlit_server(log: Path) -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free local port; yields its URL once healthy."""
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, server)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


def browser_or_skip():
    """Debian's Chromium and Playwright's sync API, or skip (fail in CI, which installs both)."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run must install Debian's `chromium`")
        pytest.skip("Chromium is not installed (CI installs Debian's `chromium`; locally: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    return executable, sync_api


def test_sample_to_results_and_pdf_report_in_chromium(server_url, tmp_path):
    executable, sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(executable), headless=True, args=CHROMIUM_ARGS,
            accept_downloads=True, viewport={"width": 1400, "height": 2200})
        try:
            page = context.new_page()
            page.goto(server_url, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Analyse a slice").wait_for(timeout=180_000)
            page.get_by_text("Synthetic phantom").first.wait_for(timeout=60_000)
            page.get_by_role("button", name="Analyse", exact=True).click()
            page.get_by_text("Members agreeing").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("Where the models looked").first.wait_for(timeout=60_000)
            pdf_button = page.get_by_role("button", name=re.compile(r"Report \(PDF\)"))
            pdf_button.wait_for(timeout=60_000)
            with page.expect_download(timeout=180_000) as download_info:
                pdf_button.click()
            download = download_info.value
            target = ARTIFACTS / "browser_report.pdf"
            download.save_as(str(target))
            page.get_by_role("heading", name="Analyse a slice").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser_analyze.png"))
        finally:
            context.close()
    data = target.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    assert download.suggested_filename.endswith("_report.pdf")
    assert (ARTIFACTS / "browser_analyze.png").stat().st_size > 10_000


def test_a_deep_link_opened_first_on_a_fresh_server_stays_inside_the_app(tmp_path):
    """A bookmarked /model_comparison opened before anyone loaded the root: Streamlit would run the
    page on its own (legacy pages/ folder mode); the page must come up in the app's navigation."""
    executable, sync_api = browser_or_skip()
    with streamlit_server(tmp_path / "server.log") as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/model_comparison", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Compare models").wait_for(timeout=180_000)
            page.get_by_text("not a medical device").first.wait_for(timeout=60_000)
            nav = page.get_by_test_id("stSidebarNav").inner_text()
        finally:
            browser.close()
    assert all(title in nav for title in ("Analyse a slice", "Analyse a batch", "Explore BraTS volumes", "Compare models"))
    assert "streamlit app" not in nav.lower() and "model comparison" not in nav.lower()
