"""Property-based tests (Hypothesis) of the upload readers: only typed errors escape, and what is
accepted is usable. Example counts are bounded for CI; ``python -m core.fuzz --n 10000`` runs the
same generators at scale, each input in a worker with a time and memory limit."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.evaluation import fuzz
from core.slices.batch import expand_uploads
from core.errors import InputError
from core.volumes.case import read_case, read_case_zip

BOUNDED = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
pytestmark = pytest.mark.filterwarnings("ignore")


def outcome_of(inp: fuzz.FuzzInput) -> dict:
    out = fuzz.run_one(inp)
    assert out["status"] in ("typed", "accepted"), f"{out['error']}: {out['message']} <- {inp.description}"
    return out


def slice_input(name: str, data: bytes, options: dict | None = None) -> fuzz.FuzzInput:
    return fuzz.FuzzInput("slice", [(name, data)], f"{len(data)} bytes as {name}", options or {})


options_strategy = st.fixed_dictionaries({}, optional={
    "frame": st.integers(-2, 5),
    "axis": st.integers(-1, 3),
    "index": st.integers(-1, 40),
})


# --------------------------------------------------------------------------- slice reader


@BOUNDED
@given(data=st.binary(max_size=3000), ext=st.sampled_from(fuzz.EXTENSIONS))
def test_random_bytes_under_every_extension(data, ext):
    outcome_of(slice_input(f"upload{ext}", data))


@BOUNDED
@given(seed=st.sampled_from(sorted(fuzz.SEEDS)), rng_seed=st.integers(0, 2**16),
       cut=st.one_of(st.none(), st.integers(0, 4000)),
       edits=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=6),
       options=options_strategy)
def test_truncated_and_edited_valid_files(seed, rng_seed, cut, edits, options):
    name, data = fuzz.SEEDS[seed](np.random.default_rng(rng_seed))
    raw = bytearray(data if cut is None else data[:cut])
    for at, value in edits:
        if raw:
            raw[at % len(raw)] = value
    out = outcome_of(slice_input(name, bytes(raw), options))
    if cut is None and not edits and not options:
        assert out["status"] == "accepted", out  # an untouched seed is an ordinary file: it is read


@BOUNDED
@given(family=st.sampled_from(["absurd_raster", "absurd_dicom", "absurd_nifti", "mutated_seed", "random_bytes"]),
       rng_seed=st.integers(0, 2**32 - 1))
def test_absurd_headers_and_damaged_files(family, rng_seed):
    inp = fuzz.FAMILIES[family][0](np.random.default_rng(rng_seed))
    if inp.target == "slice":
        outcome_of(inp)


@BOUNDED
@given(width=st.sampled_from(fuzz.EXTREME_SIDES), height=st.sampled_from(fuzz.EXTREME_SIDES),
       depth=st.sampled_from([1, 2, 4, 8, 16, 3]), colour=st.sampled_from([0, 2, 3, 4, 6, 1]))
def test_png_headers_declaring_any_size(width, height, depth, colour):
    outcome_of(slice_input("declared.png", fuzz.png_with_header(width, height, depth, colour)))


@BOUNDED
@given(width=st.sampled_from(fuzz.EXTREME_SIDES), height=st.sampled_from(fuzz.EXTREME_SIDES))
def test_tiny_jpegs_declaring_any_size(width, height):
    out = outcome_of(slice_input("declared.jpg", fuzz.jpeg_declaring(width, height)))
    assert out["seconds"] < 5.0


# --------------------------------------------------------------------------- batch zips


member_names = st.one_of(
    st.sampled_from(["a.png", "scans/b.dcm", "../../etc/passwd.png", "/abs/c.nii", "C:\\x\\d.tif",
                     "__MACOSX/._e.png", ".hidden.png", "inner.zip", "folder/", "f.nii.gz"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40),
)


@BOUNDED
@given(members=st.lists(st.tuples(member_names, st.sampled_from(sorted(fuzz.SEEDS)), st.booleans()),
                        min_size=1, max_size=4),
       rng_seed=st.integers(0, 2**16),
       patch=st.sampled_from([None, "encrypted", "method", "liar", "truncate", "flip"]),
       method=st.sampled_from([1, 6, 9, 14, 93, 98, 99]))
def test_expand_uploads_reports_every_bad_member(members, rng_seed, patch, method):
    rng = np.random.default_rng(rng_seed)
    files = []
    for name, seed, damage in members:
        data = fuzz.SEEDS[seed](rng)[1]
        files.append((name, fuzz.mutate(data, rng)[0] if damage else data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    data = buffer.getvalue()
    if patch == "encrypted":
        data = fuzz.patch_zip(data, 6, 8, "<H", 0x1)
    elif patch == "method":
        data = fuzz.patch_zip(data, 8, 10, "<H", method)
    elif patch == "liar":
        data = fuzz.patch_zip(data, 22, 24, "<I", 3)
    elif patch == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif patch == "flip":
        data = fuzz.mutate(data, rng)[0]
    items, problems = expand_uploads([("batch.zip", data)])  # never raises
    assert all(p.status == "error" and p.message for p in problems)
    outcome_of(fuzz.FuzzInput("batch", [("batch.zip", data)], f"zip {patch}"))
    if patch in ("encrypted", "method") and method != 14:
        assert not items


@BOUNDED
@given(rng_seed=st.integers(0, 2**32 - 1))
def test_generated_batch_zips(rng_seed):
    inp = fuzz.batch_zip(np.random.default_rng(rng_seed))
    if "bomb" in inp.description:  # built once, cached; one per run is enough here
        inp = fuzz.FuzzInput("batch", [("b.zip", fuzz.bomb_zip(64 << 20))], "64 MB bomb")
    outcome_of(inp)


# --------------------------------------------------------------------------- BraTS cases


@BOUNDED
@given(rng_seed=st.integers(0, 2**32 - 1))
def test_read_case_on_generated_cases(rng_seed):
    rng = np.random.default_rng(rng_seed)
    inp = fuzz.brats_case(rng)
    if "bomb" in inp.description:
        return  # the fuzz CLI covers it; building one per example is slow
    outcome_of(inp)


@BOUNDED
@given(rng_seed=st.integers(0, 2**16), label_dtype=st.sampled_from(["uint8", "int16", "int32", "int64", "float32"]),
       image_dtype=st.sampled_from(["int16", "uint16", "float32", "float64", "int64"]), as_zip=st.booleans())
def test_ordinary_cases_of_any_dtype_are_read(rng_seed, label_dtype, image_dtype, as_zip):
    files = fuzz.case_files(np.random.default_rng(rng_seed), label_dtype=label_dtype, image_dtype=image_dtype)
    if as_zip:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        case = read_case_zip(buffer.getvalue())
    else:
        case = read_case(files)
    fuzz.check_case(case)


@BOUNDED
@given(rng_seed=st.integers(0, 2**16), field=st.sampled_from(["pixdim", "srow", "scl_slope", "datatype", "vox_offset"]),
       value=st.sampled_from(fuzz.ABSURD_FLOATS))
def test_absurd_case_headers_are_refused_or_read(rng_seed, field, value):
    import gzip

    rng = np.random.default_rng(rng_seed)
    files = fuzz.case_files(rng)
    name = sorted(files)[int(rng.integers(0, len(files)))]
    raw = gzip.decompress(files[name])
    fields = {field: [value] * (8 if field == "pixdim" else 12) if field in ("pixdim", "srow") else value}
    if field == "datatype":
        fields = {"datatype": int(rng.choice([0, 128, 2304, 999]))}
    if field == "srow":
        fields["sform_code"] = 1
    files[name] = fuzz.nifti_with(raw, **fields)
    try:
        fuzz.check_case(read_case(files))
    except InputError:
        pass


def test_fuzz_cli_counts_and_reports():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "core.evaluation.fuzz", "--n", "12", "--seed", "3", "--progress", "0"],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stdout + run.stderr
    result = run.stdout.strip().splitlines()[-1]
    assert result.startswith("RESULT typed=") and "untyped=0 hangs=0" in result and result.endswith("n=12")
    fields = dict(part.split("=") for part in result.split()[1:])
    assert int(fields["typed"]) + int(fields["accepted"]) == 12
    assert float(fields["max_rss_mb"]) < 1536


def test_generated_inputs_are_reproducible():
    a, b = fuzz.make_input(7, 42), fuzz.make_input(7, 42)
    assert a.description == b.description and a.files == b.files
