"""End to end in a real browser: `streamlit run` on a free local port, driven by headless Chromium.

Uses Playwright with Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``); Playwright
never downloads a browser of its own. Every page the tests open is watched: a request to anything
but the local server fails the test (the app must work fully offline). The tests go from the
default real example to its result and press every download back to back, check the pages at the
projector sizes 1024×768 and 1280×720 (the decision whole and visible, the BraTS legend, the
Compare page's key columns), and press the Batch and BraTS downloads back to back too. Screenshots,
the PDF and the timings go to ``artifacts/``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

from core.evaluation.bench_load import streamlit_server as serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Generous: the first Analyse may wait for the models to load inside the server.
RESULT_TIMEOUT_MS = 420_000
PROJECTOR_SIZES = [(1024, 768), (1280, 720)]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def chromium_path() -> Path | None:
    found = CHROMIUM if CHROMIUM.exists() else (Path(p) if (p := shutil.which("chromium")) else None)
    return found


@contextmanager
def streamlit_server(log: Path) -> Iterator[str]:
    """The app on a free loopback port (:func:`core.evaluation.bench_load.streamlit_server`); yields its URL once healthy."""
    with serve(log) as (url, _):
        yield url


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


class Offline:
    """Aborts, and records, every request a page makes to anything but the local server."""

    def __init__(self, context):
        self.outside: list[str] = []
        context.route("**/*", self.handle)

    def handle(self, route) -> None:
        url = route.request.url
        host = urlparse(url).hostname
        if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


@contextmanager
def browser_context(pw, executable, tmp_path: Path, size: tuple[int, int]):
    """A fresh Chromium profile (a new Streamlit session) at ``size``, watched by :class:`Offline`."""
    context = pw.chromium.launch_persistent_context(
        str(tmp_path / f"profile_{size[0]}x{size[1]}_{time.monotonic_ns()}"), executable_path=str(executable),
        headless=True, args=CHROMIUM_ARGS, accept_downloads=True, viewport={"width": size[0], "height": size[1]})
    offline = Offline(context)
    try:
        yield context, offline
    finally:
        context.close()
    assert offline.outside == [], f"the app requested something outside localhost: {offline.outside}"


def open_page(context, url: str, heading: str):
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name=heading).wait_for(timeout=180_000)
    return page


def analyse_default(page) -> float:
    """Press Analyse on the default input (the first bundled real example); seconds to the result."""
    page.get_by_text("Real scan").first.wait_for(timeout=60_000)
    start = time.monotonic()
    page.get_by_role("button", name="Analyse", exact=True).click()
    page.get_by_text("Members agreeing").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    page.get_by_role("heading", name="Downloads").wait_for(timeout=120_000)
    return time.monotonic() - start


def metric_value(page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=re.compile("^" + re.escape(label))).first.get_by_test_id(
        "stMetricValue")


def assert_whole_and_visible(page, locator, expected: str | None = None) -> None:
    """The element is on screen after scrolling to it, inside the window's width, and its text is not cut
    (no ellipsis: its content is no wider than its box)."""
    locator.scroll_into_view_if_needed()
    text = locator.inner_text().strip()
    if expected is not None:
        assert text == expected, (text, expected)
    fits = locator.evaluate("""el => {
        const r = el.getBoundingClientRect();
        const cut = [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1
                                                           && getComputedStyle(e).overflow !== 'visible');
        return {cut, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                width: window.innerWidth, height: window.innerHeight};
    }""")
    assert not fits["cut"], f"{text!r} is truncated"
    assert 0 <= fits["left"] and fits["right"] <= fits["width"], f"{text!r} is outside the window: {fits}"
    assert 0 <= fits["top"] and fits["bottom"] <= fits["height"], f"{text!r} is not visible: {fits}"


def press_back_to_back(page, names: list[str], timeout_s: float = 120) -> dict[str, bytes]:
    """Click the download buttons ``names`` one right after the other (no wait between clicks) and
    return the downloaded files by suggested name, once every one has arrived."""
    arrived = []
    page.on("download", lambda download: arrived.append(download))
    buttons = [page.get_by_role("button", name=re.compile(re.escape(n))).first for n in names]
    for button in buttons:
        button.scroll_into_view_if_needed()
    for button in buttons:
        button.click()
    deadline = time.monotonic() + timeout_s
    while len(arrived) < len(names) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    files = {}
    for download in arrived:
        assert download.failure() is None, download.failure()
        files[download.suggested_filename] = Path(download.path()).read_bytes()
    assert len(files) == len(names), f"{len(files)} of {len(names)} downloads arrived: {sorted(files)}"
    return files


def rerun_seconds(page, button) -> float:
    """Seconds from a click on ``button`` until the app's run ends (its "running" indicator is gone)."""
    status = page.get_by_test_id("stStatusWidget")
    start = time.monotonic()
    button.click()
    try:
        status.wait_for(state="visible", timeout=3_000)
    except Exception:  # noqa: BLE001 -- a run shorter than the indicator's delay
        return time.monotonic() - start
    status.wait_for(state="hidden", timeout=120_000)
    return time.monotonic() - start


def test_real_example_to_result_and_every_download_back_to_back(server_url, tmp_path):
    executable, sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw, browser_context(pw, executable, tmp_path, (1280, 720)) as (context, _):
        opened = time.monotonic()
        page = open_page(context, server_url, "Analyse a slice")
        icon = page.evaluate("() => [...document.querySelectorAll('link[rel*=icon]')].map(l => l.href)")
        assert icon and all(urlparse(h).hostname in LOCAL_HOSTS or h.startswith("data:") for h in icon), icon
        seconds = analyse_default(page)
        first_result_s = time.monotonic() - opened
        assert_whole_and_visible(page, metric_value(page, "Decision"))
        assert metric_value(page, "Expert label").inner_text().strip() == "Glioma"
        files = press_back_to_back(page, ["Report (PDF)", "Report (JSON)", "Measurements (CSV)", "Mask (PNG)",
                                          "Overlay (PNG)"])
        warm_s = rerun_seconds(page, page.get_by_role("button", name="Analyse", exact=True))   # models loaded
        page.get_by_role("heading", name="Analyse a slice").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "browser_analyze.png"))
    by_suffix = {name.rsplit("_", 1)[-1]: data for name, data in files.items()}
    assert by_suffix["report.pdf"].startswith(b"%PDF") and len(by_suffix["report.pdf"]) > 10_000
    (ARTIFACTS / "browser_report.pdf").write_bytes(by_suffix["report.pdf"])
    assert json.loads(by_suffix["report.json"])["decision"]["label"]
    assert by_suffix["features.csv"].startswith(b"feature,value,unit") and b"Centroid" in by_suffix["features.csv"]
    assert by_suffix["mask.png"].startswith(b"\x89PNG") and by_suffix["overlay.png"].startswith(b"\x89PNG")
    (ARTIFACTS / "browser_timings.json").write_text(json.dumps(
        {"page_open_to_first_result_s": round(first_result_s, 1), "first_analyse_press_to_result_s": round(seconds, 1),
         "warm_analyse_s": round(warm_s, 1)}, indent=1))


@pytest.mark.parametrize("size", PROJECTOR_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pages_at_projector_sizes(server_url, tmp_path, size):
    executable, sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw, browser_context(pw, executable, tmp_path, size) as (context, _):
        page = open_page(context, server_url, "Analyse a slice")
        analyse_default(page)
        for label in ("Decision", "Expert label", "Ensemble probability"):
            assert_whole_and_visible(page, metric_value(page, label))
        overlay = page.get_by_test_id("stImage").filter(has_text="Segmentation overlay").first
        overlay.scroll_into_view_if_needed()
        assert overlay.bounding_box()["width"] > 120
        page.screenshot(path=str(ARTIFACTS / f"browser_analyze_{size[0]}.png"))

        page = open_page(context, f"{server_url}/brats_explorer", "Explore BraTS volumes")
        legend = page.get_by_test_id("bx-legend")
        legend.wait_for(timeout=120_000)
        assert_whole_and_visible(page, legend)
        assert all(part in legend.inner_text() for part in ("NCR", "ED", "ET"))
        assert "None" not in page.get_by_test_id("stMain").inner_text()
        page.screenshot(path=str(ARTIFACTS / f"browser_brats_{size[0]}.png"))

        page = open_page(context, f"{server_url}/model_comparison", "Compare models")
        table = page.get_by_test_id("stDataFrame").first
        table.wait_for(timeout=60_000)
        assert_whole_and_visible(page, page.get_by_role("heading", name=re.compile("Classifiers")))
        if size[0] >= 1280:       # the key columns fit without scrolling sideways
            wide = table.evaluate("el => { const s = el.querySelector('.dvn-scroller');"
                                  " return s ? s.scrollWidth - s.clientWidth : 0; }")
            assert wide <= 1, f"the classification table needs {wide} px of sideways scrolling at {size[0]} px"
        text = page.get_by_test_id("stMain").inner_text()
        assert "issue" not in text.lower() and "awaiting" not in text.lower()
        page.screenshot(path=str(ARTIFACTS / f"browser_compare_{size[0]}.png"))


def test_batch_and_brats_downloads_back_to_back(server_url, tmp_path):
    executable, sync_api = browser_or_skip()
    with sync_api.sync_playwright() as pw, browser_context(pw, executable, tmp_path, (1280, 900)) as (context, _):
        page = open_page(context, f"{server_url}/batch", "Analyse a batch")
        page.get_by_text("The bundled real examples").click()
        page.get_by_role("button", name="Run batch").click()
        page.get_by_text("Accuracy against the true class").first.wait_for(timeout=RESULT_TIMEOUT_MS)
        files = press_back_to_back(page, ["Results (CSV)", "Everything (ZIP)"])
        assert files["batch_results.csv"].startswith(b"file,")
        (ARTIFACTS / "browser_batch.zip").write_bytes(files["batch_results.zip"])
        assert zipfile.ZipFile(ARTIFACTS / "browser_batch.zip").namelist()

        page = open_page(context, f"{server_url}/brats_explorer", "Explore BraTS volumes")
        page.get_by_role("button", name="Segment with the model").click()
        page.get_by_text("Segmented").first.wait_for(timeout=RESULT_TIMEOUT_MS)
        files = press_back_to_back(page, ["Prediction (NIfTI", "Volumes (CSV)"])
        nifti = next(v for k, v in files.items() if k.endswith(".nii.gz"))
        assert nifti[:2] == b"\x1f\x8b"
        assert next(v for k, v in files.items() if k.endswith(".csv")).startswith(b"part,")


def test_a_deep_link_opened_first_on_a_fresh_server_stays_inside_the_app(tmp_path):
    """A bookmarked /model_comparison opened before anyone loaded the root: Streamlit would run the
    page on its own (legacy pages/ folder mode); the page must come up in the app's navigation."""
    executable, sync_api = browser_or_skip()
    with streamlit_server(tmp_path / "server.log") as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            offline = Offline(context)
            page = context.new_page()
            page.goto(f"{url}/model_comparison", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Compare models").wait_for(timeout=180_000)
            page.get_by_text("not a medical device").first.wait_for(timeout=60_000)
            nav = page.get_by_test_id("stSidebarNav").inner_text()
        finally:
            browser.close()
    assert offline.outside == [], f"the app requested something outside localhost: {offline.outside}"
    assert all(title in nav for title in ("Analyse a slice", "Analyse a batch", "Explore BraTS volumes", "Compare models"))
    assert "streamlit app" not in nav.lower() and "model comparison" not in nav.lower()
