"""README screenshots, taken from the running app in headless Chromium at 1280×720.

    python scripts/screenshots.py [--out docs/screenshots] [--chromium PATH]

Starts ``streamlit run streamlit_app.py`` on a free loopback port (nothing else is contacted: any
request that would leave localhost is aborted and makes the script fail), opens the Analyse page on
its default input — the first bundled real example — presses *Analyse*, ticks the expert outline,
switches Grad-CAM on, and saves small palette PNGs (each well under 200 KB) of the decision, the outlines, the BraTS
explorer and the Compare models page. Needs the dev requirements (Playwright) and Debian's
``chromium``.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1280, 720)
LIMIT_BYTES = 200_000


@contextmanager
def server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BTD_PRELOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def save_small(png: bytes, path: Path) -> None:
    """Save a screenshot as a 256-colour PNG (text stays sharp; a page fits in well under 200 KB)."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    size = path.stat().st_size
    shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    print(f"{shown}: {size / 1000:.0f} KB")
    if size > LIMIT_BYTES:
        raise SystemExit(f"{path} is {size} bytes, over {LIMIT_BYTES}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="Chromium executable (Debian's)")
    args = parser.parse_args(argv)
    if not args.chromium:
        raise SystemExit("Chromium not found: install Debian's `chromium` or pass --chromium")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith(("data:", "blob:")) or urlparse(r.request.url).hostname in {"127.0.0.1", "localhost"}:
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with server() as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": SIZE[0], "height": SIZE[1]})
        context.route("**/*", route)
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_role("heading", name="Analyse a slice").wait_for(timeout=180_000)
        page.get_by_text("Real scan").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Analyse", exact=True).click()
        page.get_by_text("Members agreeing").first.wait_for(timeout=420_000)
        page.get_by_role("heading", name="Downloads").wait_for(timeout=120_000)
        page.get_by_text("Show the expert's outline").click()
        page.get_by_text("yellow line: expert outline").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.get_by_test_id("stImage").first.scroll_into_view_if_needed()
        page.get_by_text("Input guard").first.scroll_into_view_if_needed()
        page.mouse.move(900, 400)
        page.mouse.wheel(0, 260)
        page.wait_for_timeout(800)
        save_small(page.screenshot(), args.out / "analyse_real_example_1280.png")
        page.get_by_text("Show Grad-CAM").first.click()      # computed only when asked for
        page.get_by_text("Grad-CAM for").first.wait_for(timeout=180_000)
        page.wait_for_timeout(1500)
        page.get_by_text("Where the models looked").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(800)
        save_small(page.screenshot(), args.out / "analyse_outlines_1280.png")

        page.goto(f"{url}/brats_explorer", wait_until="domcontentloaded")
        page.get_by_test_id("bx-legend").wait_for(timeout=120_000)
        page.get_by_text("top anterior, left = patient right").first.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        save_small(page.screenshot(), args.out / "brats_1280.png")

        page.goto(f"{url}/model_comparison", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Classifiers — Official Testing split").wait_for(timeout=120_000)
        page.get_by_test_id("stDataFrame").first.wait_for(timeout=60_000)
        page.get_by_text("Role: ").first.scroll_into_view_if_needed()
        page.wait_for_timeout(3000)
        save_small(page.screenshot(), args.out / "compare_1280.png")
        browser.close()
    if outside:
        raise SystemExit(f"the app requested something outside localhost: {outside}")


if __name__ == "__main__":
    main()
