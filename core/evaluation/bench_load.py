"""Load benchmark: N browser sessions pressing *Analyse* at once on one local server.

    python -m core.bench_load [--sessions 1 5 10 20] [--timeout 120] [--same-input] [--json OUT]

Starts ``streamlit run streamlit_app.py`` headless on a free port of 127.0.0.1, and drives it with
headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright, as ``tests/test_browser.py``
does). Chromium is sent through a proxy that does not exist, so nothing but the local server can
be reached (loopback is never proxied). Every session is a fresh browser context (its own
Streamlit session) on the Analyse page; it uploads a bundled real example (``sample_data/real``),
made distinct per session by changing two corner pixels, so that the server's result cache cannot
answer it (``--same-input`` adds a labelled round where every session analyses the default
example unchanged). The sessions are prepared first; then all press *Analyse* together. Each page
records with its own clock when the click arrives and when the decision (the "Members agreeing"
metric) and then the whole result (the Downloads heading) enter it, watched by a MutationObserver
rather than polled, so that neither Playwright's delays under load nor polling are counted. Before
the clicks, the round waits until the server and the browsers are idle (the sessions are open and
nobody is doing anything yet).

Rounds, in order: one cold session (pressed as soon as the page is ready: the models may still be
loading in the background), ``--warm-repeats`` warm single sessions (each a new session and a new
input on the warm server), then one round per ``--sessions`` count. Each round's clicks are bounded
by ``--timeout`` seconds (sessions not done by then count as failed) and its preparation by
``--setup-timeout``; each round has a fresh Chromium. The server's resident memory (its process and children, sampled every 0.2 s) is
reported as the peak during each round, and the CPU seconds the server and the browsers used from
the clicks until every session was done.

Last line: ``RESULT warm_median_s=... warm_max_s=... n1_median_s=... n1_max_s=... n1_ok=1/1
n1_peak_mb=... n5_...`` (``same_n20_...`` for the same-input round). Exits 1 when a session failed.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core import config
from core.evaluation.jsonsafe import json_ready

#: Most sessions one round may open (each is a Chromium renderer on this machine).
MAX_SESSIONS = 40
CHROMIUM = Path("/usr/bin/chromium")
#: No network but loopback: every other request goes to a proxy port where nothing listens.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--proxy-server=http://127.0.0.1:9", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 800}
DECISION_TEXT = "Members agreeing"
COMPLETE_HEADING = "Downloads"


@dataclass
class Round:
    """One round: ``seconds`` per session to the decision (``None``: failed), to the whole result, peak RSS."""

    label: str
    sessions: int
    seconds: list[float | None] = field(default_factory=list)
    complete_seconds: list[float | None] = field(default_factory=list)
    peak_mb: float = 0.0
    errors: list[str] = field(default_factory=list)
    server_cpu_s: float = 0.0
    browser_cpu_s: float = 0.0

    @property
    def done(self) -> list[float]:
        return [s for s in self.seconds if s is not None]

    @property
    def ok(self) -> int:
        return len(self.done)

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.done) if self.done else None

    @property
    def max_s(self) -> float | None:
        return max(self.done) if self.done else None

    @property
    def complete_median_s(self) -> float | None:
        done = [s for s in self.complete_seconds if s is not None]
        return statistics.median(done) if done else None


# --------------------------------------------------------------------------- inputs

def example_images() -> list[tuple[str, np.ndarray]]:
    """The bundled real example slices as 8-bit greyscale arrays (name, pixels)."""
    from PIL import Image

    from core.data.examples import bundled

    out = []
    for example in bundled():
        with Image.open(config.SAMPLE_DIR / example.file) as image:
            out.append((Path(example.file).stem, np.asarray(image.convert("L"))))
    if not out:
        raise SystemExit("no bundled real examples (sample_data/SOURCES.csv): nothing to upload")
    return out


def distinct_inputs(examples: list[tuple[str, np.ndarray]], count: int, start: int) -> list[tuple[str, bytes]]:
    """``count`` PNG uploads cycling through ``examples``; input ``start + i`` has its two top-left pixels set
    to its own number, so no two inputs of a run share pixels (and none is served from the server's cache)."""
    from PIL import Image

    out = []
    for i in range(start, start + count):
        name, pixels = examples[i % len(examples)]
        image = pixels.copy()
        image[0, 0], image[0, 1] = i % 256, i // 256
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append((f"load_{i:03d}_{name}.png", buffer.getvalue()))
    return out


# --------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {server.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"streamlit was not healthy at {url} within {timeout:.0f} s")


@contextmanager
def streamlit_server(log: Path, timeout: float = 180.0, preload: bool = True) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run streamlit_app.py`` on a free port of 127.0.0.1 (headless); yields its URL and process
    once healthy. ``preload``: the server starts loading the models at once (``BTD_PRELOAD``)."""
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
           **({"BTD_PRELOAD": "1"} if preload else {})}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=config.REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, server, timeout)
            yield url, server
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


class MemorySampler:
    """Peak resident memory of a process and its children, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def rss(self) -> int:
        import psutil

        try:
            tree = [self._process, *self._process.children(recursive=True)]
            return sum(p.memory_info().rss for p in tree if p.is_running())
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self.rss())

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by the server (and its children), and by this process's Chromium processes."""
        import psutil

        def used(processes) -> float:
            total = 0.0
            for process in processes:
                try:
                    total += sum(process.cpu_times()[:2])
                except psutil.Error:
                    pass
            return total

        try:
            server = [self._process, *self._process.children(recursive=True)]
            mine = psutil.Process().children(recursive=True)
        except psutil.Error:
            return 0.0, 0.0
        pids = {p.pid for p in server}

        def is_chromium(process) -> bool:
            try:
                return process.pid not in pids and "chrom" in process.name().lower()
            except psutil.Error:
                return False

        return used(server), used(p for p in mine if is_chromium(p))

    def take_peak_mb(self) -> float:
        """The peak since the last call (in MiB), and start a new period."""
        peak, self._peak = max(self._peak, self.rss()), 0
        return peak / 2**20

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


# --------------------------------------------------------------------------- sessions

async def prepare(browser, url: str, upload: tuple[str, bytes] | None, timeout_ms: float):
    """A new session on the Analyse page with ``upload`` chosen (else the default example), idle, ready to press."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    await page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    await page.get_by_role("heading", name="Analyse a slice").wait_for(timeout=timeout_ms)
    if upload is None:
        await page.get_by_text("Real scan").first.wait_for(timeout=timeout_ms)
    else:
        await page.get_by_text("Upload a file", exact=True).first.click(timeout=timeout_ms)
        name, data = upload
        await page.locator("input[type=file]").first.set_input_files(
            files=[{"name": name, "mimeType": "image/png", "buffer": data}], timeout=timeout_ms)
    button = page.get_by_role("button", name="Analyse", exact=True)
    await button.wait_for(timeout=timeout_ms)
    await wait_idle(page, timeout_ms)
    return context, page


async def wait_idle(page, timeout_ms: float) -> None:
    """Until the app's "running" indicator is gone (a run still going would delay the click's run)."""
    await page.wait_for_timeout(300)
    await page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=timeout_ms)


#: Installed in the page before the click: records, with the page's own clock, when the click arrives and when
#: the decision and then the whole result enter the page (a MutationObserver: no polling that would itself load
#: the browsers, and none of Playwright's own delays under load are counted).
WATCH = """([decision, complete]) => {
  const text = () => document.body ? document.body.textContent : "";
  if (text().includes(decision)) throw new Error("the page shows a decision before the click");
  const times = window.__btdTimes = {};
  document.addEventListener("click", () => { times.click = times.click ?? Date.now(); }, {capture: true});
  window.__btdDone = new Promise(resolve => {
    const check = () => {
      const now = text();
      if (times.decision === undefined && now.includes(decision)) times.decision = Date.now();
      if (times.decision !== undefined && now.includes(complete)) {
        times.complete = Date.now();
        observer.disconnect();
        resolve(times);
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  });
  return true;
}"""


def _seconds(times: dict, event: str) -> float | None:
    return (times[event] - times["click"]) / 1000 if times.get(event) and times.get("click") else None


async def press(page, timeout_s: float) -> tuple[float | None, float | None, str | None]:
    """Click *Analyse*; seconds from the click's arrival in the page to the decision there, and to the whole
    result (``None`` when not reached within ``timeout_s``), and what went wrong."""
    error = None
    try:
        await page.evaluate(WATCH, [DECISION_TEXT, COMPLETE_HEADING])
        await page.get_by_role("button", name="Analyse", exact=True).click(timeout=timeout_s * 1000)
        await asyncio.wait_for(page.evaluate("() => window.__btdDone"), timeout_s)
    except Exception as err:  # noqa: BLE001 -- a timed-out or broken session is a result, not a crash
        error = f"{type(err).__name__}: {(str(err).splitlines() or ['timed out'])[0][:160]}"
    try:
        times = await asyncio.wait_for(page.evaluate("() => window.__btdTimes || {}"), 10)
    except Exception:  # noqa: BLE001 -- the page is gone
        times = {}
    decision = _seconds(times, "decision")
    if decision is not None and decision > timeout_s:
        decision, error = None, error or f"decision after {decision:.1f} s, past the timeout"
    return decision, _seconds(times, "complete"), error


async def quiet(sampler: MemorySampler, limit_s: float = 60.0, window_s: float = 1.0, busy_s: float = 0.3) -> None:
    """Until the server and the browsers together use under ``busy_s`` CPU seconds in ``window_s`` (the sessions
    are open and idle, as when people press at once), at most ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    before = sum(sampler.cpu_seconds())
    while time.monotonic() < deadline:
        await asyncio.sleep(window_s)
        now = sum(sampler.cpu_seconds())
        if now - before < busy_s:
            return
        before = now


async def run_round(browser, url: str, label: str, uploads: list[tuple[str, bytes] | None],
                    timeout_s: float, setup_timeout_s: float, sampler: MemorySampler, settle: bool = True) -> Round:
    """Prepare ``len(uploads)`` sessions, wait until all is idle (``settle``), then press *Analyse* in all of them
    at once."""
    result = Round(label, len(uploads))
    prepared = await asyncio.gather(*(prepare(browser, url, u, setup_timeout_s * 1000) for u in uploads),
                                    return_exceptions=True)
    pages = [p[1] for p in prepared if not isinstance(p, BaseException)]
    result.errors += [f"setup: {type(p).__name__}: {str(p).splitlines()[0][:160]}"
                      for p in prepared if isinstance(p, BaseException)]
    if settle:
        await quiet(sampler)
    sampler.take_peak_mb()
    server_cpu, browser_cpu = sampler.cpu_seconds()
    outcomes = await asyncio.gather(*(press(page, timeout_s) for page in pages))
    result.peak_mb = round(sampler.take_peak_mb(), 1)
    server_after, browser_after = sampler.cpu_seconds()
    result.server_cpu_s = round(server_after - server_cpu, 1)
    result.browser_cpu_s = round(browser_after - browser_cpu, 1)
    result.seconds = [o[0] for o in outcomes] + [None] * (len(uploads) - len(pages))
    result.complete_seconds = [o[1] for o in outcomes] + [None] * (len(uploads) - len(pages))
    result.errors += [o[2] for o in outcomes if o[2]]
    await asyncio.gather(*(p[0].close() for p in prepared if not isinstance(p, BaseException)),
                         return_exceptions=True)
    return result


async def benchmark(url: str, sampler: MemorySampler, args: argparse.Namespace) -> list[Round]:
    from playwright.async_api import async_playwright

    examples = example_images()
    used = 0

    def fresh(count: int) -> list[tuple[str, bytes] | None]:
        nonlocal used
        used += count
        return list(distinct_inputs(examples, count, used - count))

    steps = [("cold", fresh(1))] + [("warm", fresh(1)) for _ in range(args.warm_repeats)]
    steps += [(f"n{n}", fresh(n)) for n in args.sessions]
    if args.same_input:
        steps.append((f"same_n{max(args.sessions)}", [None] * max(args.sessions)))
    rounds = []
    async with async_playwright() as pw:
        for label, uploads in steps:              # a fresh browser per round: rounds do not inherit its state
            browser = await pw.chromium.launch(executable_path=str(chromium()), headless=True, args=CHROMIUM_ARGS)
            try:
                timeout = args.setup_timeout if label == "cold" else args.timeout
                done = await run_round(browser, url, label, uploads, timeout, args.setup_timeout, sampler,
                                       settle=label != "cold")      # the cold click may wait for the model load
            finally:
                await browser.close()
            print(progress_line(done), flush=True)
            rounds.append(done)
    return rounds


def chromium() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else (Path(p) if (p := shutil.which("chromium")) else None)
    if found is None:
        raise SystemExit("Chromium is not installed (apt-get install chromium); the load benchmark needs it")
    return found


# --------------------------------------------------------------------------- report

def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def progress_line(r: Round) -> str:
    errors = f"  ({len(r.errors)} error(s): {r.errors[0]})" if r.errors else ""
    return (f"{r.label:>10}: {r.ok}/{r.sessions} ok, median {_s(r.median_s)} s, max {_s(r.max_s)} s, "
            f"peak {r.peak_mb:.0f} MB{errors}")


def warm_rounds(rounds: list[Round]) -> list[float]:
    return [s for r in rounds if r.label == "warm" for s in r.done]


def format_table(rounds: list[Round]) -> str:
    """The rounds as a Markdown table: click to decision (median, max), to the whole result, memory."""
    lines = ["| round | sessions | ok | click→decision median (s) | max (s) | click→whole result median (s) "
             "| server peak RSS (MB) | CPU s: server / browsers |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        lines.append(f"| {r.label} | {r.sessions} | {r.ok}/{r.sessions} | {_s(r.median_s)} | {_s(r.max_s)} "
                     f"| {_s(r.complete_median_s)} | {r.peak_mb:.0f} | {r.server_cpu_s:.1f} / {r.browser_cpu_s:.1f} |")
    return "\n".join(lines)


def result_line(rounds: list[Round]) -> str:
    """``RESULT warm_median_s=... warm_max_s=... n1_median_s=... n1_max_s=... n1_ok=1/1 n1_peak_mb=...``."""
    warm = warm_rounds(rounds)
    parts = [f"warm_median_s={_s(statistics.median(warm) if warm else None)}",
             f"warm_max_s={_s(max(warm) if warm else None)}"]
    for r in rounds:
        if r.label in {"cold", "warm"}:
            continue
        parts += [f"{r.label}_median_s={_s(r.median_s)}", f"{r.label}_max_s={_s(r.max_s)}",
                  f"{r.label}_ok={r.ok}/{r.sessions}", f"{r.label}_peak_mb={r.peak_mb:.0f}"]
    return "RESULT " + " ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10, 20],
                        help=f"concurrent sessions per round (each 1..{MAX_SESSIONS})")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a round's clicks may take")
    parser.add_argument("--setup-timeout", type=float, default=300.0,
                        help="seconds to open a round's sessions (and for the cold first analysis)")
    parser.add_argument("--warm-repeats", type=int, default=3, help="warm single-session rounds")
    parser.add_argument("--same-input", action="store_true",
                        help="add a round of the largest count where every session analyses the default example")
    parser.add_argument("--json", type=Path, default=None, help="also write the rounds as JSON here")
    args = parser.parse_args(argv)
    if any(not 1 <= n <= MAX_SESSIONS for n in args.sessions):
        parser.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if args.timeout <= 0 or args.setup_timeout <= 0 or args.warm_repeats < 0:
        parser.error("--timeout and --setup-timeout must be positive, --warm-repeats >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chromium()
    with tempfile.TemporaryDirectory(prefix="btd_load_") as tmp:
        log = Path(tmp) / "server.log"
        try:
            with streamlit_server(log) as (url, server):
                sampler = MemorySampler(server.pid)
                try:
                    rounds = asyncio.run(benchmark(url, sampler, args))
                finally:
                    sampler.stop()
        except (RuntimeError, TimeoutError) as err:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            print(f"the server did not come up: {err}\n{tail}", file=sys.stderr)
            return 2
    print(f"\nLoad benchmark on {os.cpu_count()} CPU cores (server and Chromium on the same machine), "
          f"--timeout {args.timeout:g} s:\n")
    print(format_table(rounds))
    if args.json:
        rows = [{**asdict(r), "median_s": r.median_s, "max_s": r.max_s} for r in rounds]
        args.json.write_text(json.dumps(json_ready(rows, digits=None), indent=1, allow_nan=False))
    print(result_line(rounds))
    return 0 if all(r.ok == r.sessions for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
