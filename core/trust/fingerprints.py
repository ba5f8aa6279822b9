"""Near-duplicate detection for classification images (test-set hygiene and upload look-up).

Policy: a left-right mirrored copy counts as a duplicate (flipping is the commonest
augmentation, and the official split holds hundreds of mirrored copies); chains of duplicates
inside the test set are followed (connected components).

Calibration (brain_mri_4class, official split, :class:`DuplicateRule` defaults): 1311 test
images; 993 duplicate a training image (644 of them mirrored), 46 more duplicate another test
image, 272 are kept. Checks: every one of the 103 test images whose original MD5 is also a
training original's is found; an independent raw check (same image size, 56 px RMS < 5 grey
levels, either orientation) finds 975 copies, all flagged. The 18 flagged pairs that are not
raw copies were inspected: re-cropped or contrast-changed copies of the same image. Without
histogram equalisation four gamma-changed notumor copies scored only 0.950-0.959 while
adjacent slices of one patient reach 0.958; equalised, verified duplicates score >= 0.964
and the closest non-duplicates (adjacent slices, visibly different) <= 0.93, hence
``min_ncc`` = 0.95. Same-patient adjacent slices are *not* removed (no patient IDs exist).
Hashes alone are weak here: ``phash``/``dhash`` <= 2 finds 86 % of the duplicates (1 of 322
non-duplicates hit); <= 4 finds 97 % but hits 26 adjacent-slice non-duplicates, so
:meth:`core.trust.hash_index.HashIndex.query` keeps the strict default.

Everything here works on a *fingerprint* of the brain-cropped slice: the slice goes through
:func:`core.imaging.preprocess.classifier_input` (brain crop, square pad, resize to 64x64), then

* ``phash`` / ``dhash``: 64-bit perceptual and difference hashes (``imagehash``) of that thumbnail;
* ``thumb``: the thumbnail shrunk to 32x32 and z-scored, for normalised cross-correlation (NCC);
* ``phash_mirror`` / ``dhash_mirror``: the hashes of the left-right mirrored thumbnail.

Comparisons are vectorised: :func:`hamming` XORs two hash arrays and counts bits with
a byte-table popcount; :func:`ncc_matrix` is one matrix product of flattened z-scored thumbnails.

The split of a class-folder dataset and ``python -m core.dedup`` are in :mod:`core.data.dedup_split`;
the shipped training-set hash index is :class:`core.trust.hash_index.HashIndex`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np
from PIL import Image

from core.imaging.preprocess import brain_bbox, crop, pad_to_square, resize, to_unit_range

#: Side of the brain-cropped thumbnail that is hashed.
HASH_THUMB = 64
#: Side of the z-scored thumbnail used for the coarse NCC ranking, and its Gaussian blur (px).
NCC_THUMB = 32
COARSE_BLUR = 1.5
#: Side of the thumbnail used to verify candidates by aligned correlation.
FINE_THUMB = 128
#: Rows of the test set compared with the whole training set at once (bounds memory).
_BLOCK = 256


# --------------------------------------------------------------------------- fingerprints

@dataclass(frozen=True)
class Fingerprint:
    """Hashes and thumbnails of one slice (see the module docstring).

    ``thumb`` is the coarse NCC thumbnail (``NCC_THUMB`` square, blurred, z-scored) used to
    rank candidates; ``fine`` the ``FINE_THUMB`` square, histogram-equalised uint8 thumbnail
    used to verify a candidate by aligned correlation (equalisation makes copies whose contrast
    was changed non-linearly correlate as well as exact copies). Neither is shipped in
    :class:`core.trust.hash_index.HashIndex`.
    """

    phash: int
    dhash: int
    thumb: np.ndarray
    phash_mirror: int = 0
    dhash_mirror: int = 0
    fine: np.ndarray | None = field(default=None, repr=False)


def _hash_int(bits: np.ndarray) -> int:
    """A boolean hash matrix as an unsigned integer (row-major bits, most significant first)."""
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def _phash(thumb: np.ndarray) -> int:
    """64-bit DCT perceptual hash (``imagehash.phash``) of a uint8 thumbnail."""
    import imagehash

    return _hash_int(imagehash.phash(Image.fromarray(thumb), hash_size=8).hash)


def _dhash(thumb: np.ndarray) -> int:
    """64-bit horizontal difference hash (``imagehash.dhash``) of a uint8 thumbnail."""
    import imagehash

    return _hash_int(imagehash.dhash(Image.fromarray(thumb), hash_size=8).hash)


def normalise_background(image: np.ndarray) -> np.ndarray:
    """Slice in [0, 1] with its background level mapped to 0 and its 99.5th percentile to 1.

    Copies whose brightness or contrast was changed (a lifted black background in particular)
    otherwise get a different brain crop from :func:`core.imaging.preprocess.brain_bbox`. The background
    level is the median of a thin border ring, capped by the 5th percentile so that a slice
    whose head touches the frame is not clipped heavily.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D greyscale image, got shape {image.shape}")
    unit = to_unit_range(image)
    h, w = unit.shape
    ring = max(1, int(round(0.03 * min(h, w))))
    border = np.concatenate([unit[:ring].ravel(), unit[-ring:].ravel(),
                             unit[:, :ring].ravel(), unit[:, -ring:].ravel()])
    bg = min(float(np.median(border)), float(np.percentile(unit, 5)))
    hi = float(np.percentile(unit, 99.5))
    if hi - bg < 0.05:
        return unit
    return np.clip((unit - bg) / (hi - bg), 0.0, 1.0).astype(np.float32)


def _square(image: np.ndarray) -> np.ndarray:
    """Background-normalised, brain-cropped (:func:`core.imaging.preprocess.brain_bbox`), square slice."""
    unit = normalise_background(image)
    return pad_to_square(crop(unit, brain_bbox(unit)))


def _to_u8(square: np.ndarray, size: int) -> np.ndarray:
    """A [0, 1] square image resized to ``size`` and quantised to uint8."""
    return np.round(np.clip(resize(square, size), 0.0, 1.0) * 255.0).astype(np.uint8)


def thumbnail(image: np.ndarray, size: int = HASH_THUMB) -> np.ndarray:
    """Background-normalised, brain-cropped, square-padded ``size`` x ``size`` uint8 thumbnail."""
    return _to_u8(_square(image), size)


def _coarse(thumb64: np.ndarray) -> np.ndarray:
    """Blurred, z-scored ``NCC_THUMB`` thumbnail (the blur makes the ranking tolerate crop jitter)."""
    small = resize(thumb64.astype(np.float32), NCC_THUMB)
    small = cv2.GaussianBlur(small, (0, 0), COARSE_BLUR)
    small = small - small.mean()
    std = float(small.std())
    return (small / std if std > 1e-6 else np.zeros_like(small)).astype(np.float32)


def fingerprint(image: np.ndarray) -> Fingerprint:
    """Fingerprint of one 2D greyscale slice (uint8, or float in [0, 1], or any other dtype)."""
    square = _square(image)
    thumb = _to_u8(square, HASH_THUMB)
    mirror = np.ascontiguousarray(thumb[:, ::-1])
    return Fingerprint(
        phash=_phash(thumb),
        dhash=_dhash(thumb),
        thumb=_coarse(thumb),
        phash_mirror=_phash(mirror),
        dhash_mirror=_dhash(mirror),
        fine=cv2.equalizeHist(_to_u8(square, FINE_THUMB)),
    )


def hash_array(values: Iterable[int]) -> np.ndarray:
    """Python ints (< 2**64) as a uint64 array."""
    return np.fromiter((int(v) for v in values), dtype=np.uint64)


def _stack(fps: list[Fingerprint]) -> dict[str, np.ndarray]:
    """Arrays of a list of fingerprints: hashes (uint64) and flattened coarse thumbnails."""
    d = NCC_THUMB * NCC_THUMB
    thumbs = (np.stack([np.asarray(f.thumb, np.float32).reshape(-1) for f in fps]) if fps
              else np.zeros((0, d), np.float32))
    return {
        "phash": hash_array(f.phash for f in fps),
        "dhash": hash_array(f.dhash for f in fps),
        "phash_mirror": hash_array(f.phash_mirror for f in fps),
        "dhash_mirror": hash_array(f.dhash_mirror for f in fps),
        "thumb": thumbs,
        "thumb_mirror": (thumbs.reshape(-1, NCC_THUMB, NCC_THUMB)[:, :, ::-1].reshape(len(fps), d)
                         if fps else thumbs),
    }


# --------------------------------------------------------------------------- distances

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (``np.bitwise_count`` needs numpy 2; this works on 1.26 too)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    return _POPCOUNT8[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.int64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances ``(Na, Nb)`` (int64) between two arrays of 64-bit hashes."""
    a = np.asarray(a, dtype=np.uint64).reshape(-1)
    b = np.asarray(b, dtype=np.uint64).reshape(-1)
    return popcount(a[:, None] ^ b[None, :])


def ncc_matrix(thumbs_a: np.ndarray, thumbs_b: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation ``(Na, Nb)`` of two stacks of thumbnails.

    Thumbnails may be ``(N, T, T)`` or flattened ``(N, T*T)``; each is z-scored here (a no-op
    for :attr:`Fingerprint.thumb`), so the result is one matrix product divided by ``T*T``.
    """
    def prep(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float32)
        t = t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(1, -1)
        t = t - t.mean(axis=1, keepdims=True)
        std = t.std(axis=1, keepdims=True)
        return np.where(std > 1e-6, t / np.maximum(std, 1e-6), 0.0).astype(np.float32)

    a, b = prep(thumbs_a), prep(thumbs_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"thumbnail sizes differ: {a.shape[1]} vs {b.shape[1]} pixels")
    return np.clip(a @ b.T / a.shape[1], -1.0, 1.0)


_ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-5)


def aligned_ncc(fixed: np.ndarray, moving: np.ndarray, margin: float = 0.08) -> float:
    """Correlation of two fine thumbnails after aligning ``moving`` onto ``fixed``.

    The alignment is an affine ECC fit (``cv2.findTransformECC``) started at the identity;
    an implausible result (scale outside 0.85-1.18, shift over 15 %) or a failed fit falls
    back to the identity. The correlation is taken over the pixels covered by the warped
    image, ``margin`` of the side away from the edges.
    """
    a = np.asarray(fixed, np.float32)
    b = np.asarray(moving, np.float32)
    n = a.shape[0]
    eye = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(a, b, eye.copy(), cv2.MOTION_AFFINE, _ECC_CRITERIA, None, 3)
        scale = float(np.sqrt(abs(np.linalg.det(warp[:, :2]))))
        if not (0.85 < scale < 1.18) or float(np.abs(warp[:, 2]).max()) > 0.15 * n:
            warp = eye
    except cv2.error:
        warp = eye
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(b, warp, (n, n), flags=cv2.INTER_LINEAR | flags)
    valid = cv2.warpAffine(np.ones_like(b), warp, (n, n), flags=cv2.INTER_NEAREST | flags) > 0
    m = int(margin * n)
    if m:
        valid[:m] = valid[-m:] = False
        valid[:, :m] = valid[:, -m:] = False
    x, y = a[valid], warped[valid]
    if x.size < 16:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 1e-6 else 0.0


# --------------------------------------------------------------------------- the rule

@dataclass
class DuplicateRule:
    """When two slices count as duplicates (defaults measured: see the module docstring).

    A pair is a *candidate* when its coarse NCC is among the ``top_k`` best for the query and
    at least ``min_coarse_ncc``, or when both hashes are within ``max_phash``/``max_dhash``.
    A candidate is a *duplicate* when its aligned fine-thumbnail correlation
    (:func:`aligned_ncc`) is at least ``min_ncc``. With ``mirror`` the left-right mirror image
    is tried as well. The hash thresholds alone are what :meth:`core.trust.hash_index.HashIndex.query` uses.
    """

    max_phash: int = 2
    max_dhash: int = 2
    min_ncc: float = 0.95
    min_coarse_ncc: float = 0.6
    top_k: int = 10
    mirror: bool = True


def compare(a: Fingerprint, b: Fingerprint, rule: DuplicateRule | None = None) -> dict:
    """Distances between two fingerprints in the better orientation of ``a``.

    Returns ``phash``, ``dhash``, ``ncc`` (coarse), ``aligned_ncc`` (``nan`` when the pair is
    not a candidate), ``mirrored`` and ``duplicate``.
    """
    rule = rule or DuplicateRule()
    options = [(a.phash, a.dhash, np.asarray(a.thumb), a.fine, False)]
    if rule.mirror:
        options.append((a.phash_mirror, a.dhash_mirror, np.asarray(a.thumb)[:, ::-1],
                        None if a.fine is None else a.fine[:, ::-1], True))
    best: dict | None = None
    for ph, dh, thumb, fine, mirrored in options:
        p = int(hamming(np.array([ph]), np.array([b.phash]))[0, 0])
        d = int(hamming(np.array([dh]), np.array([b.dhash]))[0, 0])
        n = float(ncc_matrix(thumb.reshape(1, -1), np.asarray(b.thumb).reshape(1, -1))[0, 0])
        cand = n >= rule.min_coarse_ncc or (p <= rule.max_phash and d <= rule.max_dhash)
        al = float("nan")
        if cand and fine is not None and b.fine is not None:
            al = aligned_ncc(b.fine, np.ascontiguousarray(fine))
        res = {"phash": p, "dhash": d, "ncc": n, "aligned_ncc": al, "mirrored": mirrored,
               "duplicate": bool(al >= rule.min_ncc)}
        key = (res["duplicate"], -1.0 if np.isnan(al) else al, n)
        if best is None or key > best["_key"]:
            best = {**res, "_key": key}
    assert best is not None
    best.pop("_key")
    return best


def is_duplicate(a: Fingerprint, b: Fingerprint, rule: DuplicateRule | None = None) -> bool:
    """Whether two fingerprints are duplicates under ``rule`` (mirror images included if set)."""
    return compare(a, b, rule)["duplicate"]


def _candidates(qa: dict[str, np.ndarray], ref: dict[str, np.ndarray], rule: DuplicateRule,
                same: bool) -> tuple[np.ndarray, ...]:
    """Candidate pairs ``(i, j, mirrored, coarse ncc, phash, dhash)``, vectorised per block.

    ``same``: query and reference are one set (the diagonal is skipped).
    """
    nq, nr = len(qa["phash"]), len(ref["phash"])
    out: list[tuple[np.ndarray, ...]] = []
    k = min(rule.top_k, nr - (1 if same else 0))
    for start in range(0, nq, _BLOCK):
        rows = slice(start, min(nq, start + _BLOCK))
        r = np.arange(rows.stop - rows.start)
        nc = ncc_matrix(qa["thumb"][rows], ref["thumb"])
        ph = hamming(qa["phash"][rows], ref["phash"])
        dh = hamming(qa["dhash"][rows], ref["dhash"])
        mir = np.zeros(nc.shape, bool)
        if rule.mirror:
            nc_m = ncc_matrix(qa["thumb_mirror"][rows], ref["thumb"])
            ph_m = hamming(qa["phash_mirror"][rows], ref["phash"])
            dh_m = hamming(qa["dhash_mirror"][rows], ref["dhash"])
            hash_ok = (ph <= rule.max_phash) & (dh <= rule.max_dhash)
            hash_ok_m = (ph_m <= rule.max_phash) & (dh_m <= rule.max_dhash)
            mir = (hash_ok_m & ~hash_ok) | ((hash_ok_m == hash_ok) & (nc_m > nc))
            nc, ph, dh = np.where(mir, nc_m, nc), np.where(mir, ph_m, ph), np.where(mir, dh_m, dh)
        if same:
            nc[r, r + start] = -np.inf
        cand = (ph <= rule.max_phash) & (dh <= rule.max_dhash)
        if same:
            cand[r, r + start] = False
        if k > 0:
            top = np.argpartition(-nc, k - 1, axis=1)[:, :k]
            top_ok = np.take_along_axis(nc, top, 1) >= rule.min_coarse_ncc
            cand[np.repeat(r, k)[top_ok.ravel()], top.ravel()[top_ok.ravel()]] = True
        i, j = np.nonzero(cand)
        out.append((i + start, j, mir[i, j], nc[i, j], ph[i, j], dh[i, j]))
    if not out:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool),
                np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return tuple(np.concatenate(parts) for parts in zip(*out))


def _verify(q_fps: list[Fingerprint], r_fps: list[Fingerprint], i: np.ndarray, j: np.ndarray,
            mirrored: np.ndarray) -> np.ndarray:
    """Aligned fine correlation of each candidate pair (query side mirrored where flagged)."""
    out = np.full(len(i), np.nan, np.float32)
    for n, (a, b, m) in enumerate(zip(i, j, mirrored)):
        fa, fb = q_fps[a].fine, r_fps[b].fine
        if fa is None or fb is None:
            continue
        out[n] = aligned_ncc(fb, np.ascontiguousarray(fa[:, ::-1]) if m else fa)
    return out


def _components(n: int, edges_i: np.ndarray, edges_j: np.ndarray) -> list[list[int]]:
    """Connected components (size >= 2) of an undirected graph, members sorted, groups sorted."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0 or len(edges_i) == 0:
        return []
    graph = coo_matrix((np.ones(len(edges_i)), (edges_i, edges_j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for idx, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(idx)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _nearest_coarse(ta: dict[str, np.ndarray], tb: dict[str, np.ndarray], rule: DuplicateRule,
                    out: dict) -> None:
    """Fill ``out`` with each test image's best coarse-NCC training match (either orientation)."""
    for start in range(0, len(ta["phash"]), _BLOCK):
        rows = slice(start, min(len(ta["phash"]), start + _BLOCK))
        nc = ncc_matrix(ta["thumb"][rows], tb["thumb"])
        mir = np.zeros(nc.shape, bool)
        if rule.mirror:
            nc_m = ncc_matrix(ta["thumb_mirror"][rows], tb["thumb"])
            mir = nc_m > nc
            nc = np.maximum(nc, nc_m)
        j = np.argmax(nc, axis=1)
        r = np.arange(len(j))
        m = mir[r, j]
        for key in ("phash", "dhash"):
            plain = hamming(ta[key][rows], tb[key][j]).diagonal()
            mirrored = hamming(ta[key + "_mirror"][rows], tb[key][j]).diagonal()
            out[key][rows] = np.where(m, mirrored, plain)
        out["nearest"][rows], out["ncc"][rows], out["mirrored"][rows] = j, nc[r, j], m


def _unique_pairs(n: int, cands: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Keep one of ``(i, j)`` and ``(j, i)`` (candidates within one set are found both ways)."""
    i, j = cands[0], cands[1]
    _, first = np.unique(np.minimum(i, j) * n + np.maximum(i, j), return_index=True)
    return tuple(c[first] for c in cands)


def find_duplicates(test_fps: list[Fingerprint], train_fps: list[Fingerprint],
                    rule: DuplicateRule | None = None) -> dict:
    """Duplicates of test images in the training set and among the test images.

    Returns arrays over test indices -- ``nearest`` (train index; the verified best candidate,
    else the best coarse match; -1 without training images), ``phash``, ``dhash``, ``ncc``
    (coarse), ``aligned_ncc`` (``nan`` if no candidate), ``mirrored``, ``dup_of_train`` (bool)
    -- plus ``groups``: connected components (sorted lists of test indices, size >= 2) of the
    duplicate graph inside the test set, ``links``: for each test index in a group, the
    linked test index it correlates best with, as ``(j, phash, dhash, aligned_ncc, mirrored)``, and
    ``candidates``: how many pairs were verified.
    """
    rule = rule or DuplicateRule()
    ta, tb = _stack(test_fps), _stack(train_fps)
    n = len(test_fps)
    out: dict = {
        "nearest": np.full(n, -1, np.int64), "phash": np.full(n, -1, np.int64),
        "dhash": np.full(n, -1, np.int64), "ncc": np.full(n, np.nan, np.float32),
        "aligned_ncc": np.full(n, np.nan, np.float32), "mirrored": np.zeros(n, bool),
        "dup_of_train": np.zeros(n, bool),
    }
    n_pairs_train = 0
    if n and train_fps:
        _nearest_coarse(ta, tb, rule, out)
        i, j, mir, nc, ph, dh = _candidates(ta, tb, rule, same=False)
        al = _verify(test_fps, train_fps, i, j, mir)
        n_pairs_train = len(i)
        score = np.where(np.isnan(al), -2.0, al)
        seen = np.zeros(n, bool)
        for c in np.lexsort((-nc, -score)):          # best candidate of each test image first
            t = i[c]
            if seen[t] or np.isnan(al[c]):
                continue
            seen[t] = True
            out["nearest"][t], out["phash"][t], out["dhash"][t] = j[c], ph[c], dh[c]
            out["ncc"][t], out["aligned_ncc"][t], out["mirrored"][t] = nc[c], al[c], mir[c]
            out["dup_of_train"][t] = al[c] >= rule.min_ncc
    i, j, mir, nc, ph, dh = _unique_pairs(n, _candidates(ta, ta, rule, same=True))
    al = _verify(test_fps, test_fps, i, j, mir)
    dup = np.nan_to_num(al, nan=-1.0) >= rule.min_ncc
    links: dict[int, tuple[int, int, int, float, bool]] = {}
    for c in np.flatnonzero(dup):
        for a, b in ((int(i[c]), int(j[c])), (int(j[c]), int(i[c]))):
            if a not in links or al[c] > links[a][3]:
                links[a] = (b, int(ph[c]), int(dh[c]), float(al[c]), bool(mir[c]))
    out["groups"] = _components(n, i[dup], j[dup])
    out["links"] = links
    out["candidates"] = {"test_train": int(n_pairs_train), "within_test": int(len(i))}
    return out
