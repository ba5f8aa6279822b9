"""The Analyse page's third input: a held-out slice of the public datasets, and its ground truth.

Lists come from :mod:`core.data.heldout` (cached per data folder: they hold paths only, nothing of a
user); the chosen file is read from the data folder, never copied. After the analysis the true
class, and for figshare slices the expert's mask with the Dice of the model's mask, sit beside
the result, so a student or a presenter can check the models on real scans they were not trained on.
"""
from __future__ import annotations

import random

import numpy as np
import streamlit as st

from core import config
from core.data.datasets import DatasetError
from core.data.heldout import (FIGSHARE_SPACING_MM, HELD_OUT_SETS, HeldOutImage, held_out_images, position_of,
                          set_of_folder)
from core.imaging.metrics import dice
from core.slices.pipeline import SliceResult
from core.imaging.viz import overlay_mask
from ui.handoff import ANALYSE_REQUEST, hand_over, take
from ui.spacing import spacing_button
from ui.state import kept

ALL_CLASSES = "all classes"
#: The Analyse page's input choice for a held-out image.
HELD_OUT_SOURCE = "Held-out public image"


@st.cache_data(show_spinner="Listing the held-out images…")
def cached_images(which: str, data_dir: str) -> list[HeldOutImage]:
    """:func:`core.data.heldout.held_out_images` of one set, cached per set and data folder.

    The lists hold paths and labels only (nothing of a user), so every session shares them; one entry
    per (set, folder), kept as long as the server process (no ``ttl``, no ``max_entries``: there are two
    sets and normally one folder).
    """
    from pathlib import Path

    return held_out_images(which, Path(data_dir))


def no_data_help(lead: str = "The public datasets are not on this machine. To try the models on real held-out "
                             "scans, set") -> None:
    """How to point the app at the public datasets, after ``lead`` (which ends in the verb "set")."""
    st.info(f"{lead} the environment variable `BTD_DATA_DIR` to the folder holding `brain_mri_4class/` (Nickparvar "
            "2021, Kaggle) and `figshare_3064/` (Cheng et al. 2017, figshare) — it defaults to `../shared/data` "
            "beside the repository — and restart the app. See the README's *Data* section.",
            icon=":material/folder_off:")


def listed_set(key: str) -> list[HeldOutImage] | None:
    """A held-out set picker (widget ``key``) and the chosen set's images; ``None`` (after saying why) without them."""
    data_dir = config.data_dir()
    if data_dir is None:
        no_data_help()
        return None
    which = st.selectbox("Held-out set", list(HELD_OUT_SETS), format_func=HELD_OUT_SETS.get,
                         key=kept(key, next(iter(HELD_OUT_SETS)), list(HELD_OUT_SETS)))
    try:
        return cached_images(which, str(data_dir))
    except DatasetError as err:
        st.warning(f"This set cannot be listed: {err}")
        return None


def offer_analysis(dataset: str, relatives: list[str], key: str) -> None:
    """A picker and a button that open one of ``relatives`` (paths inside ``dataset``) on the Analyse page."""
    which = set_of_folder(dataset)
    if which is None or not relatives or config.data_dir() is None:
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Open one of these in *Analyse a slice* (Grad-CAM, segmentation, measurements)",
                            relatives, key=f"{key}_pick")
    if right.button("Analyse it", key=f"{key}_go", icon=":material/biotech:"):
        hand_over("pages/analyze.py", ANALYSE_REQUEST, {"set": which, "relative": chosen})


def select_handed_over_image() -> str | None:
    """Turn a held-out image handed over by another page into the Analyse page's input choices.

    Call before those widgets are drawn. Returns why the hand-off failed, or ``None`` (also when
    nothing was handed over); the caller shows it.
    """
    request = take(ANALYSE_REQUEST)
    if not request:
        return None
    data_dir = config.data_dir()
    if data_dir is None:
        return "The public data folder is gone, so the chosen test image cannot be opened."
    try:
        images = cached_images(request["set"], str(data_dir))
    except DatasetError as err:
        return f"The chosen test image cannot be opened: {err}"
    found = position_of(images, request["relative"])
    if found is None:
        return f"`{request['relative']}` is not among the held-out images of that set."
    item = images[found]
    same_class = [im for im in images if im.label == item.label]
    st.session_state.update(an_source=HELD_OUT_SOURCE, an_ho_set=request["set"], an_ho_class=item.label,
                            an_ho_index=position_of(same_class, item.relative) + 1)
    return None


def choose_held_out_sample(default: int = 50) -> list[tuple[HeldOutImage, bytes]]:
    """Set, size and seed of a random sample of held-out images (the Batch page); ``(item, bytes)`` pairs."""
    images = listed_set("bt_ho_set")
    if images is None:
        return []
    left, right = st.columns([3, 1])
    most = min(200, len(images))
    count = left.slider("Images (drawn at random)", 1, most, key=kept("bt_ho_count", min(default, most),
                                                                      range(1, most + 1)))
    seed = right.number_input("Seed", min_value=0, max_value=10_000, step=1, key=kept("bt_ho_seed", 0))
    chosen = sorted(np.random.default_rng(int(seed)).choice(len(images), size=count, replace=False))
    st.info(f"**{count} real held-out scans** of {len(images)}, drawn with seed {seed}: each row will show the "
            "true class (and, for figshare, the Dice against the expert mask). Read from the data folder, "
            "never stored.", icon=":material/folder_open:")
    return [(images[k], images[k].path.read_bytes()) for k in chosen]


def _pick_random(count: int) -> None:
    st.session_state["an_ho_index"] = random.randint(1, count)


def choose_held_out() -> tuple[bytes, str, HeldOutImage] | None:
    """Set, class and image pickers; ``(bytes, file name, item)`` of the chosen slice, or ``None``."""
    images = listed_set("an_ho_set")
    if images is None:
        return None
    classes = [ALL_CLASSES] + [c for c in config.CLASS_NAMES if any(im.label == c for im in images)]
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    chosen_class = left.selectbox("True class", classes, key=kept("an_ho_class", ALL_CLASSES, classes),
                                  format_func=lambda c: c if c == ALL_CLASSES else config.CLASS_LABELS[c])
    shown = images if chosen_class == ALL_CLASSES else [im for im in images if im.label == chosen_class]
    if st.session_state.get("an_ho_index", 1) > len(shown):
        st.session_state["an_ho_index"] = 1
    index = middle.number_input(f"Image (1–{len(shown)})", min_value=1, max_value=len(shown), step=1,
                                key=kept("an_ho_index", 1, range(1, len(shown) + 1)))
    right.button("Random", key="an_ho_random", on_click=_pick_random, args=(len(shown),),
                 icon=":material/casino:")
    item = shown[int(index) - 1]
    patient = f" · patient {item.patient}" if item.patient else ""
    st.info(f"**Real held-out scan** from the public data folder: `{item.relative}` — true class "
            f"**{config.CLASS_LABELS[item.label]}**{patient}. It is read from disk and never stored by the app.",
            icon=":material/folder_open:")
    if item.mask is not None:
        spacing_button(FIGSHARE_SPACING_MM, "an_ho_spacing",
                       f"figshare files state no pixel spacing; the dataset notes give about {FIGSHARE_SPACING_MM} mm "
                       "per pixel at this size (0.49 mm at the original 512 px).")
    return item.path.read_bytes(), item.path.name, item


def show_ground_truth(item: HeldOutImage, image: np.ndarray, result: SliceResult, opacity: float) -> None:
    """The true class against the decision and, with an expert mask, truth and model mask side by side."""
    st.subheader("Against the ground truth")
    truth = config.CLASS_LABELS[item.label]
    if result.decision == item.label:
        st.success(f"The ensemble's decision, **{result.decision_label}**, matches the true class.",
                   icon=":material/check_circle:")
    else:
        st.error(f"The ensemble says **{result.decision_label}**; the true class is **{truth}**.",
                 icon=":material/cancel:")
    expert = item.expert_mask()
    if expert is None:
        return
    if expert.shape != image.shape:
        st.warning(f"The expert mask ({expert.shape[1]}×{expert.shape[0]}) does not match the image "
                   f"({image.shape[1]}×{image.shape[0]}); no Dice is computed.")
        return
    left, right = st.columns(2)
    left.image(overlay_mask(image, expert, "fill", opacity), caption="Expert mask (figshare)", width="stretch")
    if not result.segmented or result.mask is None:
        right.info("The slice was not segmented (no tumour found). Tick *Segment even when no tumour is found* in "
                   "the sidebar to compare the masks.")
        return
    score = dice(result.mask, expert)
    right.image(overlay_mask(image, result.mask, "fill", opacity, colour=(230, 30, 30)),
                caption=f"Model mask · Dice {score:.3f}", width="stretch")
    st.metric("Dice, model mask vs expert mask", f"{score:.3f}",
              help="2|A∩B| / (|A|+|B|) on this slice's pixel grid; 1 = identical masks.")
