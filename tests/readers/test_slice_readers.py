"""Tests for core.readers (slice dispatch, format detection, raster, DICOM, NIfTI readers): every input
is built in the test (no dataset files)."""
from __future__ import annotations

import gzip
import resource
import struct
import time
import zlib
from io import BytesIO

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from core import config
from core.errors import (
    CorruptFile,
    EmptyFile,
    ImageTooLarge,
    InputError,
    NeedsSliceSelection,
    NoPixelData,
    UnsupportedFile,
)
from core.readers.decoded import Slice
from core.readers.detect import SUPPORTED_EXTENSIONS, detect_format
from core.readers.slice import inspect_slice_source, read_slice, read_slice_file
from core.imaging.preprocess import to_unit_range
from upload_files import make_dicom, make_nifti

# ----------------------------------------------------------------------------- builders


def pil_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def noise_rgb(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


X, Y, Z = 6, 5, 4
ZOOMS = (0.8, 0.9, 3.0)


def ras_volume() -> np.ndarray:
    """value = 100x + 10y + z: every voxel tells where it sits."""
    x, y, z = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.float32)


def ras_affine() -> np.ndarray:
    return np.diag([*ZOOMS, 1.0])


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, built row by row (a few KB for 20000x20000)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- raster


def test_png_8bit_grey():
    arr = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    s = read_slice(pil_bytes(Image.fromarray(arr), "PNG"), "scan.png")
    assert isinstance(s, Slice)
    assert s.source_format == "png" and s.name == "scan.png"
    assert s.image.dtype == np.float32 and s.shape == arr.shape
    np.testing.assert_allclose(s.image, arr / 255.0, atol=1e-6)
    np.testing.assert_array_equal(s.image_uint8, arr)
    assert s.spacing_mm is None and s.identifiers == {} and s.colourfulness == 0.0
    assert s.metadata["bit depth"] == "8"


def test_png_16bit_relative_order_preserved():
    rng = np.random.default_rng(1)
    arr = rng.integers(1000, 60000, (40, 50)).astype(np.uint16)
    s = read_slice(pil_bytes(Image.fromarray(arr), "PNG"), "deep.png")
    assert s.image.dtype == np.float32 and s.shape == (40, 50)
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    np.testing.assert_allclose(s.image, to_unit_range(arr), atol=1e-6)
    # monotonic: a larger input never gives a smaller output
    order = np.argsort(arr.ravel(), kind="stable")
    assert np.all(np.diff(s.image.ravel()[order]) >= -1e-7)
    assert s.image.max() == pytest.approx(1.0) and s.image.min() == pytest.approx(0.0)
    assert s.metadata["bit depth"] == "16"


def test_rgb_jpeg_colourfulness():
    colourful = np.zeros((64, 64, 3), dtype=np.uint8)
    colourful[:, :32] = (255, 0, 0)
    colourful[:, 32:] = (0, 0, 255)
    s = read_slice(pil_bytes(Image.fromarray(colourful), "JPEG", quality=95), "cat.jpg")
    assert s.source_format == "jpeg" and s.image.ndim == 2
    assert s.colourfulness > 0.2

    grey = np.repeat(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))[..., None], 3, axis=2)
    g = read_slice(pil_bytes(Image.fromarray(grey), "JPEG", quality=95), "mri.jpeg")
    assert g.colourfulness < 0.02
    np.testing.assert_allclose(g.image, grey[..., 0] / 255.0, atol=0.03)


def test_palette_and_rgba_png():
    rgb = noise_rgb(30, 40)
    pal = Image.fromarray(rgb).convert("P")
    s = read_slice(pil_bytes(pal, "PNG"), "pal.png")
    assert s.shape == (30, 40) and s.colourfulness > 0.2
    rgba = np.dstack([rgb, np.full((30, 40), 255, np.uint8)])
    t = read_slice(pil_bytes(Image.fromarray(rgba), "PNG"), "rgba.png")
    expected = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) / 255.0
    np.testing.assert_allclose(t.image, expected, atol=1e-5)


def test_tiff_multipage_and_resolution():
    a = np.full((20, 30), 10, np.uint8)
    b = np.full((20, 30), 200, np.uint8)
    b[0, 0] = 0
    data = pil_bytes(Image.fromarray(a), "TIFF", save_all=True, append_images=[Image.fromarray(b)],
                     resolution_unit=3, x_resolution=20.0, y_resolution=10.0)
    src = inspect_slice_source(data, "stack.tif")
    assert src.kind == "multiframe" and src.n_frames == 2 and src.shape == (2, 20, 30)
    first = read_slice(data, "stack.tif")
    assert first.source_format == "tiff"
    np.testing.assert_allclose(first.image, 10 / 255.0, atol=1e-6)
    second = read_slice(data, "stack.tif", frame=1)
    assert second.image[1, 1] == pytest.approx(200 / 255.0)
    assert second.spacing_mm == pytest.approx((1.0, 0.5))  # 10 px/cm rows, 20 px/cm cols
    with pytest.raises(InputError, match="0 to 1"):
        read_slice(data, "stack.tif", frame=2)


def test_tiff_16bit_and_bmp():
    arr = (np.arange(24 * 32).reshape(24, 32) * 50).astype(np.uint16)
    s = read_slice(pil_bytes(Image.fromarray(arr), "TIFF"), "deep.tiff")
    assert s.shape == (24, 32) and s.spacing_mm is None
    assert np.all(np.diff(s.image.ravel()) >= 0)
    bmp = read_slice(pil_bytes(Image.fromarray(noise_rgb(16, 24)), "BMP"), "x.bmp")
    assert bmp.source_format == "bmp" and bmp.shape == (16, 24)


def test_exif_orientation_rotates():
    img = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (20, 1)))  # W=40, H=20
    exif = Image.Exif()
    exif[0x0112] = 6
    data = pil_bytes(img, "JPEG", exif=exif.tobytes())
    assert inspect_slice_source(data, "phone.jpg").shape == (40, 20)
    s = read_slice(data, "phone.jpg")
    assert s.shape == (40, 20)
    assert s.metadata["EXIF orientation applied"] == "6"


# ----------------------------------------------------------------------------- DICOM


def test_dicom_spacing_identifiers_metadata():
    px = np.arange(12 * 16).reshape(12, 16)
    data = make_dicom(px, PixelSpacing=[0.5, 0.7])
    s = read_slice(data, "slice.dcm")
    assert s.source_format == "dicom" and s.shape == (12, 16)
    assert s.spacing_mm == (0.5, 0.7)
    assert s.identifiers["PatientName"] == "Doe^Jane"
    assert s.identifiers["PatientID"] == "PID-12345"
    assert s.identifiers["InstitutionName"] == "General Hospital"
    flat_meta = " ".join(f"{k} {v}" for k, v in s.metadata.items())
    assert "Doe" not in flat_meta and "PID-12345" not in flat_meta and "PatientName" not in flat_meta
    assert s.metadata["Modality"] == "MR" and s.metadata["window"].startswith("percentile")
    np.testing.assert_allclose(s.image, to_unit_range(px.astype(np.float64)), atol=1e-6)


def test_dicom_imager_spacing_fallback():
    s = read_slice(make_dicom(np.ones((4, 4)), ImagerPixelSpacing=[0.25, 0.3]), "a.dcm")
    assert s.spacing_mm == (0.25, 0.3)
    assert read_slice(make_dicom(np.ones((4, 4))), "b.dcm").spacing_mm is None


def test_dicom_rescale_then_window():
    raw = np.array([[50, 100, 150, 200]], dtype=np.uint16)  # -> 0, 100, 200, 300 after rescale
    data = make_dicom(raw, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=150, WindowWidth=201)
    s = read_slice(data, "w.dcm")
    values = raw * 2.0 - 100.0
    expected = np.clip((values - 149.5) / 200.0 + 0.5, 0, 1)  # DICOM linear window, c=150 w=201
    np.testing.assert_allclose(s.image, expected, atol=1e-6)
    np.testing.assert_allclose(s.image[0], [0.0, 0.2525, 0.7525, 1.0], atol=1e-6)
    assert "150" in s.metadata["window"] and "slope 2" in s.metadata["rescale"]


def test_dicom_multivalued_window_takes_first():
    raw = np.array([[0, 100, 200]], dtype=np.uint16)
    s = read_slice(make_dicom(raw, WindowCenter=[100, 1000], WindowWidth=[101, 10]), "m.dcm")
    np.testing.assert_allclose(s.image[0], [0.0, 0.505, 1.0], atol=1e-6)  # (100-99.5)/100+0.5


def test_dicom_monochrome1_inverted():
    raw = np.array([[0, 100, 200]], dtype=np.uint16)
    mono2 = read_slice(make_dicom(raw, WindowCenter=100, WindowWidth=101), "a.dcm")
    mono1 = read_slice(make_dicom(raw, WindowCenter=100, WindowWidth=101,
                                  PhotometricInterpretation="MONOCHROME1"), "b.dcm")
    np.testing.assert_allclose(mono1.image, 1.0 - mono2.image, atol=1e-6)
    assert mono1.image[0, 0] == pytest.approx(1.0)


def test_dicom_multiframe():
    frames = np.stack([np.full((8, 10), v, np.uint16) for v in (10, 20, 30)])
    frames[:, 0, 0] = 0
    data = make_dicom(frames)
    src = inspect_slice_source(data, "cine.dcm")
    assert src.kind == "multiframe" and src.n_frames == 3 and src.shape == (3, 8, 10)
    with pytest.raises(NeedsSliceSelection) as info:
        read_slice(data, "cine.dcm")
    assert info.value.shape == (3, 8, 10)
    s = read_slice(data, "cine.dcm", frame=1)
    assert s.shape == (8, 10)
    assert s.metadata["frame"] == "1 of 3"
    np.testing.assert_allclose(s.image, to_unit_range(frames[1].astype(np.float64)), atol=1e-6)
    with pytest.raises(InputError, match="0 to 2"):
        read_slice(data, "cine.dcm", frame=3)


def test_dicom_without_pixels():
    with pytest.raises(NoPixelData):
        read_slice(make_dicom(None), "report.dcm")


def test_dicom_without_preamble_by_extension():
    data = make_dicom(np.arange(9).reshape(3, 3), preamble=False)
    assert data[128:132] != b"DICM"
    assert detect_format(data, "x.DCM") == "dicom"
    s = read_slice(data, "x.DCM")
    assert s.shape == (3, 3)


def test_dicom_compressed_undecodable_names_transfer_syntax():
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    ds = pydicom.dcmread(BytesIO(make_dicom(np.ones((8, 8)))))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([bytes(64)])
    ds["PixelData"].VR = "OB"
    buf = BytesIO()
    ds.save_as(buf)
    with pytest.raises((UnsupportedFile, CorruptFile), match="JPEG-LS"):
        read_slice(buf.getvalue(), "jls.dcm")


def test_dicom_rgb_to_luminance():
    import pydicom

    ds = pydicom.dcmread(BytesIO(make_dicom(np.ones((6, 6)))))
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 255
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()
    buf = BytesIO()
    ds.save_as(buf)
    s = read_slice(buf.getvalue(), "colour.dcm")
    assert s.shape == (6, 6) and s.colourfulness == pytest.approx(1.0)
    np.testing.assert_allclose(s.image, 0.299, atol=1e-6)


def test_dicom_truncations_raise_input_errors():
    data = make_dicom(np.arange(64 * 64).reshape(64, 64), PixelSpacing=[1, 1])
    for cut in (140, 300, len(data) // 2, len(data) - 10):
        with pytest.raises(InputError):
            read_slice(data[:cut], "cut.dcm")


# ----------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_3d_needs_selection_and_axial(gz):
    vol = ras_volume()
    name = "brain.nii.gz" if gz else "brain.nii"
    data = make_nifti(vol, ras_affine(), gz=gz)
    src = inspect_slice_source(data, name)
    assert src.kind == "volume" and src.shape == (X, Y, Z) and src.source_format == "nifti"
    with pytest.raises(NeedsSliceSelection, match=r"3D volume \(6x5x4\)") as info:
        read_slice(data, name)
    assert info.value.shape == (X, Y, Z)

    s = read_slice(data, name, axis=2, index=1)
    assert s.source_format == "nifti" and s.shape == (Y, X)
    assert s.spacing_mm == pytest.approx((0.9, 0.8))  # (row = y, col = x)
    assert s.metadata["plane"] == "axial"
    expected = np.fliplr(np.rot90(vol[:, :, 1]))
    np.testing.assert_allclose(s.image, to_unit_range(expected), atol=1e-6)
    # top-left = most anterior and patient right (radiological); bottom-right = posterior, left
    assert s.image[0, 0] == pytest.approx(1.0) and s.image[-1, -1] == pytest.approx(0.0)


def test_nifti_coronal_and_sagittal_orientation_and_spacing():
    data = make_nifti(ras_volume(), ras_affine())
    cor = read_slice(data, "v.nii", axis=1, index=2)
    assert cor.shape == (Z, X) and cor.spacing_mm == pytest.approx((3.0, 0.8))
    assert cor.metadata["plane"] == "coronal"
    assert cor.image[0, 0] == pytest.approx(1.0)  # superior, patient right
    sag = read_slice(data, "v.nii", axis=0, index=3)
    assert sag.shape == (Z, Y) and sag.spacing_mm == pytest.approx((3.0, 0.9))
    assert sag.metadata["plane"] == "sagittal"
    assert sag.image[0, -1] == pytest.approx(1.0)  # superior, anterior on the right
    assert sag.image[-1, 0] == pytest.approx(0.0)
    with pytest.raises(InputError, match="0 to 3"):
        read_slice(data, "v.nii", axis=2, index=4)


def test_nifti_flipped_affine_gives_same_canonical_slice():
    vol = ras_volume()
    plain = read_slice(make_nifti(vol, ras_affine()), "a.nii", axis=2, index=2)
    flipped_affine = np.diag([-ZOOMS[0], ZOOMS[1], ZOOMS[2], 1.0])
    flipped_affine[0, 3] = (X - 1) * ZOOMS[0]
    flipped = read_slice(make_nifti(vol[::-1].copy(), flipped_affine), "b.nii", axis=2, index=2)
    np.testing.assert_array_equal(flipped.image, plain.image)
    assert flipped.spacing_mm == pytest.approx(plain.spacing_mm)
    assert flipped.metadata["original orientation"] == "LAS"


def test_nifti_permuted_axes_canonical_shape():
    vol = ras_volume()
    stored = np.transpose(vol, (1, 0, 2)).copy()  # stored as (y, x, z)
    affine = np.array([[0, ZOOMS[0], 0, 0], [ZOOMS[1], 0, 0, 0], [0, 0, ZOOMS[2], 0], [0, 0, 0, 1]])
    data = make_nifti(stored, affine)
    assert inspect_slice_source(data, "p.nii").shape == (X, Y, Z)
    s = read_slice(data, "p.nii", axis=2, index=1)
    ref = read_slice(make_nifti(vol, ras_affine()), "r.nii", axis=2, index=1)
    np.testing.assert_array_equal(s.image, ref.image)
    assert s.spacing_mm == pytest.approx((0.9, 0.8))


def test_nifti_2d_and_singleton_third_dim():
    plane = ras_volume()[:, :, 0]
    s = read_slice(make_nifti(plane, ras_affine()), "flat.nii")
    assert s.shape == (Y, X) and s.spacing_mm == pytest.approx((0.9, 0.8))
    t = read_slice(make_nifti(plane[:, :, None], ras_affine()), "one.nii.gz")
    np.testing.assert_array_equal(s.image, t.image)
    assert inspect_slice_source(make_nifti(plane[:, :, None], ras_affine()), "one.nii").kind == "image"


def test_nifti_4d():
    vol4 = np.stack([ras_volume()] * 2, axis=-1)
    with pytest.raises(InputError, match="single-modality 3D volume") as info:
        read_slice(make_nifti(vol4, ras_affine()), "dwi.nii")
    assert not isinstance(info.value, NeedsSliceSelection)
    # a 4th dimension of 1 is just a 3D volume
    with pytest.raises(NeedsSliceSelection):
        read_slice(make_nifti(ras_volume()[..., None], ras_affine()), "t1.nii")


def test_nifti_corrupt_gzip():
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(32, 32, 16)).astype(np.float32)
    gz = make_nifti(vol, ras_affine(), gz=True)
    with pytest.raises(CorruptFile):
        read_slice(gz[: len(gz) // 2], "scan.nii.gz", axis=2, index=0)
    garbled = bytearray(gz)
    garbled[len(gz) // 2: len(gz) // 2 + 64] = bytes(64)
    with pytest.raises(CorruptFile):
        read_slice(bytes(garbled), "scan.nii.gz", axis=2, index=0)
    with pytest.raises(CorruptFile):
        read_slice(gz[:30], "scan.nii.gz")


# ----------------------------------------------------------------------------- bad inputs


def test_empty_file():
    with pytest.raises(EmptyFile):
        read_slice(b"", "x.png")
    with pytest.raises(EmptyFile):
        inspect_slice_source(b"", "x.png")


def test_text_named_png():
    with pytest.raises((CorruptFile, UnsupportedFile)):
        read_slice(b"hello, this is not an image\n" * 20, "x.png")


@pytest.mark.parametrize("fmt,name", [("PNG", "half.png"), ("JPEG", "half.jpg")])
def test_truncated_raster_is_corrupt(fmt, name):
    data = pil_bytes(Image.fromarray(noise_rgb(200, 300)), fmt)
    with pytest.raises(CorruptFile):
        read_slice(data[: len(data) // 2], name)


def test_huge_png_refused_quickly_without_allocating():
    data = huge_png(20000, 20000)
    assert len(data) < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="20000"):
        read_slice(data, "huge.png")
    with pytest.raises(ImageTooLarge):
        inspect_slice_source(data, "huge.png")
    assert time.perf_counter() - start < 2.0
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 100_000  # decoding would need ~400 MB


def test_side_over_limit_refused():
    side = config.MAX_IMAGE_SIDE + 1
    data = pil_bytes(Image.new("1", (side, 4)), "PNG")
    with pytest.raises(ImageTooLarge, match=str(side)):
        read_slice(data, "wide.png")


def test_upload_bytes_limit(monkeypatch):
    monkeypatch.setattr(config, "MAX_SLICE_BYTES", 100)
    with pytest.raises(ImageTooLarge):
        read_slice(pil_bytes(Image.fromarray(noise_rgb(20, 20)), "PNG"), "big.png")


def test_unknown_extension_and_bytes():
    with pytest.raises(UnsupportedFile):
        read_slice(np.random.default_rng(0).bytes(500), "data.xyz")
    with pytest.raises(UnsupportedFile):
        read_slice(b"GIF89a" + bytes(100), "anim.gif")


def test_gz_that_is_not_nifti():
    with pytest.raises(UnsupportedFile, match="not a NIfTI"):
        read_slice(gzip.compress(b"just some text\n" * 50), "notes.gz")
    with pytest.raises(UnsupportedFile):
        read_slice(b"plain text, not gzip", "fake.gz")


@pytest.mark.parametrize("data,name", [
    (b"", "e.png"),
    (b"text" * 50, "t.jpg"),
    (b"text" * 50, "t.tif"),
    (b"text" * 50, "t.bmp"),
    (b"text" * 50, "t.dcm"),
    (b"text" * 50, "t.nii"),
    (b"text" * 50, "t.nii.gz"),
    (b"\x00" * 400, "zeros.dcm"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "header-only.png"),
    (b"\xff\xd8\xff" + bytes(40), "header-only.jpg"),
    (b"II*\x00" + bytes(40), "header-only.tif"),
])
def test_every_error_is_input_error(data, name):
    with pytest.raises(InputError):
        read_slice(data, name)
    with pytest.raises(InputError):
        inspect_slice_source(data, name)


# ----------------------------------------------------------------------------- detection & helpers


def test_detect_format():
    nii_gz = make_nifti(ras_volume(), ras_affine(), gz=True)
    assert detect_format(nii_gz, "scan.nii.gz") == "nifti"
    assert detect_format(nii_gz, "upload") == "nifti"  # gzip magic + NIfTI header inside
    assert detect_format(b"\x00" * 10, "scan.nii.gz") == "nifti"
    assert detect_format(b"\x00" * 10, "x.DCM") == "dicom"
    assert detect_format(make_dicom(np.ones((2, 2))), "file") == "dicom"
    assert detect_format(pil_bytes(Image.new("L", (4, 4)), "PNG"), "photo.jpg") == "png"
    assert detect_format(pil_bytes(Image.new("L", (4, 4)), "BMP"), "noext") == "bmp"
    with pytest.raises(UnsupportedFile):
        detect_format(b"\x00" * 10, "file")


def test_supported_extensions():
    assert set(SUPPORTED_EXTENSIONS) == {"png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm",
                                         "dicom", "nii", "gz"}


def test_read_slice_file(tmp_path):
    path = tmp_path / "disk.png"
    path.write_bytes(pil_bytes(Image.new("L", (7, 5), 128), "PNG"))
    s = read_slice_file(path)
    assert s.name == "disk.png" and s.shape == (5, 7)
    assert read_slice_file(str(path)).image[0, 0] == pytest.approx(128 / 255)


# ----------------------------------------------------------------------------- budgets and reproducers (issue 16)


def tiny_jpeg_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte JPEG whose frame header claims ``width`` x ``height`` pixels."""
    data = bytearray(pil_bytes(Image.new("L", (8, 8)), "JPEG", quality=1))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def nifti_with_dims(dims: tuple[int, ...]) -> bytes:
    """A NIfTI-1 file whose header's ``dim`` field is rewritten to ``dims`` (data left as built)."""
    raw = bytearray(make_nifti(np.zeros((4, 32, 4), np.float32), ras_affine()))
    raw[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    return bytes(raw)


def grown_kb(fn) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("spacing", ["1e-300", "1e300", "0", "-1", "nan"])
def test_absurd_dicom_pixel_spacing_is_read_as_unknown(spacing):
    from core.imaging.morphology import measure_mask, remove_small_components

    px = np.zeros((64, 64), np.uint16)
    px[16:48, 16:48] = 1000
    s = read_slice(make_dicom(px, PixelSpacing=[spacing, spacing]), "odd.dcm")
    assert s.spacing_mm is None and "ignored" in s.metadata["pixel spacing"]
    mask = remove_small_components(s.image > 0.5, 10.0, s.spacing_mm)  # ZeroDivisionError before
    features = measure_mask(mask, s.spacing_mm)
    assert features.area_px == 32 * 32 and features.area_mm2 is None


def test_plausible_dicom_spacing_is_kept():
    s = read_slice(make_dicom(np.ones((8, 8)), PixelSpacing=[0.001, 100]), "edge.dcm")
    assert s.spacing_mm == (0.001, 100.0) and "pixel spacing" not in s.metadata


def test_nifti_zero_sized_dimension_is_refused():
    from core.errors import EmptyImage

    data = nifti_with_dims((0, 32, 4))
    with pytest.raises(EmptyImage, match="0x32x4"):
        read_slice(data, "empty.nii", axis=2, index=0)
    with pytest.raises(EmptyImage):
        inspect_slice_source(data, "empty.nii")


def test_tiny_jpeg_declaring_8192_pixels_is_decoded_reduced():
    data = tiny_jpeg_declaring(8192, 8192)
    assert len(data) < 400
    assert inspect_slice_source(data, "bomb.jpg").shape == (8192, 8192)
    start = time.perf_counter()
    holder = {}
    grown = grown_kb(lambda: holder.setdefault("s", read_slice(data, "bomb.jpg")))
    s = holder["s"]
    assert time.perf_counter() - start < 2.0
    assert grown < 100_000  # a full decode would need 64 MB of pixels and 256 MB of floats
    assert s.shape == (1024, 1024) and s.image.dtype == np.float32
    assert "8192x8192" in s.metadata["reduced"]


def test_large_tiff_is_reduced_and_its_spacing_scaled():
    arr = (np.add.outer(np.arange(2100), np.arange(1500)) % 4000).astype(np.uint16)
    data = pil_bytes(Image.fromarray(arr), "TIFF", resolution_unit=3, x_resolution=20.0, y_resolution=10.0)
    s = read_slice(data, "big.tif")
    assert s.shape == (700, 500)  # factor 3: 2100 / 1024 rounded up
    assert s.spacing_mm == pytest.approx((3.0, 1.5))  # 1.0 x 0.5 mm stored pixels
    assert np.isfinite(s.image).all() and 0 <= s.image.min() and s.image.max() <= 1


@pytest.mark.parametrize("mode", ["1", "P", "RGBA", "I;16"])
def test_large_rasters_of_every_mode_are_reduced(mode):
    arr = (np.add.outer(np.arange(1100), np.arange(1300)) % 256).astype(np.uint8)
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "I;16" else Image.fromarray(arr.astype(np.uint16) * 200)
    s = read_slice(pil_bytes(img, "PNG"), f"big_{mode}.png")
    assert s.shape == (550, 650) and s.metadata["mode"] == img.mode


def test_large_dicom_is_reduced_and_its_spacing_scaled():
    px = (np.add.outer(np.arange(2100), np.arange(1500)) % 4000).astype(np.uint16)
    s = read_slice(make_dicom(px, PixelSpacing=[0.2, 0.3]), "big.dcm")
    assert s.shape == (700, 500)
    assert s.spacing_mm == pytest.approx((0.6, 0.9))
    assert s.metadata["original dtype"] == "uint16" and "2100x1500" in s.metadata["reduced"]


def test_large_nifti_slice_is_reduced_and_its_spacing_scaled():
    vol = np.random.default_rng(0).random((1500, 2100, 1), dtype=np.float32)
    s = read_slice(make_nifti(vol, ras_affine()), "big.nii")
    assert s.shape == (700, 500)  # rows = y (2100), cols = x (1500)
    assert s.spacing_mm == pytest.approx((0.9 * 3, 0.8 * 3))


def test_frame_pixel_and_frame_count_budgets(monkeypatch):
    monkeypatch.setattr(config, "MAX_FRAME_PIXELS", 1000)
    with pytest.raises(ImageTooLarge, match="MP"):
        read_slice(pil_bytes(Image.new("L", (40, 30)), "PNG"), "a.png")
    with pytest.raises(ImageTooLarge, match="MP"):
        inspect_slice_source(make_dicom(np.ones((40, 30))), "a.dcm")
    monkeypatch.setattr(config, "MAX_FRAMES", 2)
    stack = make_dicom(np.ones((3, 4, 4)))
    with pytest.raises(ImageTooLarge, match="3 frames"):
        read_slice(stack, "stack.dcm", frame=0)


def test_nifti_voxel_and_byte_budgets_apply_before_decompression(monkeypatch):
    data = make_nifti(ras_volume(), ras_affine(), gz=True)
    monkeypatch.setattr(config, "MAX_NIFTI_VOXELS", 100)
    with pytest.raises(ImageTooLarge, match="voxels"):
        read_slice(data, "v.nii.gz", axis=2, index=0)
    monkeypatch.setattr(config, "MAX_NIFTI_VOXELS", 10**6)
    monkeypatch.setattr(config, "MAX_NIFTI_BYTES", 400)
    with pytest.raises(ImageTooLarge, match="decompressed"):
        inspect_slice_source(data, "v.nii.gz")


def test_nifti_gzip_bomb_is_refused_from_its_header():
    header = nib.Nifti1Header()
    header.set_data_shape((8192, 8192, 4096))
    header.set_data_dtype(np.float32)
    bomb = gzip.compress(header.binaryblock + bytes(4) + bytes(2**20))
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        read_slice(bomb, "bomb.nii.gz", axis=2, index=0)
    assert time.perf_counter() - start < 1.0


def deflated_dicom(private_bytes: int) -> bytes:
    from pydicom import dcmread
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = dcmread(BytesIO(make_dicom(np.arange(64 * 64).reshape(64, 64) % 300)))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x00091010, "OB", bytes(private_bytes))
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_deflated_dicom_is_read_and_its_inflated_size_bounded(monkeypatch):
    assert read_slice(deflated_dicom(1000), "small.dcm").shape == (64, 64)
    data = deflated_dicom(20 * 2**20)
    assert len(data) < 100_000
    monkeypatch.setattr(config, "MAX_DICOM_INFLATED_BYTES", 10 * 2**20)
    with pytest.raises(ImageTooLarge, match="inflates"):
        read_slice(data, "bomb.dcm")
    with pytest.raises(ImageTooLarge):
        inspect_slice_source(data, "bomb.dcm")
    damaged = bytearray(data)
    damaged[-2000:-1000] = bytes(range(256)) * 3 + bytes(232)
    with pytest.raises(InputError):
        read_slice(bytes(damaged), "damaged.dcm")


def test_nifti_with_nan_affine_is_shown_as_stored():
    raw = bytearray(make_nifti(ras_volume(), ras_affine()))
    raw[280:328] = struct.pack("<12f", *([float("nan")] * 12))
    raw[252:256] = struct.pack("<hh", 0, 1)  # qform_code 0, sform_code 1
    s = read_slice(bytes(raw), "nan.nii", axis=2, index=1)
    assert s.metadata["orientation"].startswith("unknown") and s.shape == (Y, X)
    assert np.isfinite(s.image).all()


def test_nifti_with_non_finite_voxels_gives_a_finite_image():
    vol = ras_volume()
    vol[0, 0, 1], vol[1, 1, 1], vol[2, 2, 1] = np.nan, np.inf, -np.inf
    s = read_slice(make_nifti(vol, ras_affine()), "nan.nii", axis=2, index=1)
    assert np.isfinite(s.image).all() and 0 <= s.image.min() and s.image.max() <= 1
