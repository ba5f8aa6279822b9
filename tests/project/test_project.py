"""Project-level contracts: quick start = CI, layout, shipped weights, no machine paths, core without UI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core import config

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def readme_commands() -> list[str]:
    """The shell commands of the README's quick-start section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_is_two_commands_and_ci_runs_the_test_one_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    start, test = commands
    assert start.startswith("python3.11 -m venv") and start.endswith("streamlit run streamlit_app.py")
    assert "requirements.txt" in start and "pytest" in test
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines, "the README test command must appear verbatim in .ci/run"


@pytest.mark.parametrize("path", ["streamlit_app.py", "pages", "core", "weights", "sample_data",
                                  "tests", "requirements.txt", "README.md", ".ci/run"])
def test_top_level_layout(path):
    assert (ROOT / path).exists()


def test_core_is_a_plain_library_without_streamlit():
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "core").rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+streamlit", p.read_text(), flags=re.M)]
    assert offenders == []


def test_shipped_weights_are_lean_and_carded():
    manifest = json.loads((config.WEIGHTS_DIR / "manifest.json").read_text())
    files = [card["file"] for card in manifest["models"].values() if card.get("file")]
    assert files, "no shipped weights"
    total = 0
    for card in manifest["models"].values():
        for key in ("architecture", "classes", "data", "split", "metrics", "training_command"):
            assert key in card, f"{card.get('file')} card lacks {key}"
        if card.get("file"):
            size = (config.WEIGHTS_DIR / card["file"]).stat().st_size
            assert size < 16 * MIB and card["size_bytes"] == size
            total += size
    assert total < 80 * MIB


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".json", ".txt", ".toml", ".ini", ".csv", ".sh", ""}
    return [ROOT / f for f in out.splitlines() if Path(f).suffix in suffixes and (ROOT / f).is_file()]


def test_no_machine_paths_in_tracked_files():
    # Built from pieces so this file does not match its own pattern.
    roots = ["/" + "work/", "/home/\\w+", "/" + "root/", "/" + "tmp/", "C:\\\\" + "Users"]
    pattern = re.compile("(" + "|".join(roots) + ")")
    offenders = [f.relative_to(ROOT).as_posix() for f in tracked_text_files()
                 if pattern.search(f.read_text(errors="ignore"))]
    assert offenders == []


def test_no_public_data_committed():
    """Only synthetic samples (listed in the sample manifest) and the at most 12 real examples (and their
    expert masks) listed in sample_data/SOURCES.csv may sit in sample_data/; nothing image-like in tests/."""
    from core.data.examples import MAX_EXAMPLES, bundled

    image_like = {".jpg", ".jpeg", ".png", ".dcm", ".nii", ".gz", ".tif", ".tiff", ".bmp", ".mat"}
    manifest = json.loads((config.SAMPLE_DIR / "manifest.json").read_text())
    listed = set()
    for entry in manifest["files"]:
        assert entry["synthetic"] is True
        listed.add(entry["name"])
        if entry.get("mask"):
            listed.add(entry["mask"])
    real = bundled()
    assert len(real) <= MAX_EXAMPLES
    for example in real:
        assert example.dataset in {"figshare_3064", "brain_mri_4class"}, example.dataset
        listed.add(example.file)
        if example.mask:
            listed.add(example.mask)
    for path in (ROOT / "tests").rglob("*"):
        assert path.suffix.lower() not in image_like, f"data file in tests/: {path.name}"
    for path in config.SAMPLE_DIR.rglob("*"):
        if path.is_file() and path.suffix.lower() in image_like:
            rel = path.relative_to(config.SAMPLE_DIR).as_posix()
            assert rel in listed or any(rel.startswith(n + "/") for n in listed), rel


def test_train_all_runs_every_card_command_in_order():
    """scripts/train_all.sh rebuilds each shipped model as its card says: the run it continued
    from first, then its own command, then any post-processing re-tune, then its LiteRT export."""
    script = [line.strip() for line in (ROOT / "scripts" / "train_all.sh").read_text().splitlines()
              if line.startswith("python -m ")]
    cards = json.loads((config.WEIGHTS_DIR / "manifest.json").read_text())["models"]
    for name, card in cards.items():
        rules = card.get("postprocessing")
        steps = [(card.get("initialised_from") or {}).get("training_command"), card["training_command"],
                 rules.get("tuned_by") if isinstance(rules, dict) else None, card.get("runtime", {}).get("command")]
        steps = [s for s in steps if s]
        assert all(s in script for s in steps), (name, [s for s in steps if s not in script])
        assert [script.index(s) for s in steps] == sorted(script.index(s) for s in steps), name


def _collected(*args: str) -> set[str]:
    """Node ids pytest collects for ``args`` (run in a subprocess, collection only)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    return {line.split("::")[0] for line in out.splitlines() if "::" in line}


def test_markers_select_the_real_data_and_browser_tests():
    files = ["tests/evaluation/test_external_realdata.py", "tests/app/test_browser.py", "tests/imaging/test_metrics.py"]
    assert _collected("-m", "realdata", *files) == {files[0]}
    assert _collected("-m", "browser", *files) == {files[1]}
    assert _collected("-m", "slow", *files) == {files[0], files[1]}
    assert _collected("-m", "not realdata and not browser and not slow", *files) == {files[2]}


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Layout", 1)[1].split("```", 2)[1]


def test_readme_layout_names_every_package_and_module_of_core():
    """The README's layout section matches the tree: every module of core/ is named under its package."""
    block = _layout_block()
    missing = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT / "core")
        if rel.name == "__init__.py":
            continue
        if not re.search(rf"\b{re.escape(rel.stem)}\b", block):
            missing.append(rel.as_posix())
    for package in sorted(p for p in (ROOT / "core").iterdir() if (p / "__init__.py").is_file()):
        if f"{package.name}/" not in block:
            missing.append(package.name + "/")
    assert missing == [], f"README layout does not name: {missing}"
    named = set(re.findall(r"^\s+([a-z_]+)/", block, flags=re.M))
    assert named <= {p.name for p in (ROOT / "core").iterdir() if p.is_dir()} | {"annotations"}, named
