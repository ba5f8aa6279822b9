"""The Analyse page's pixel-spacing override: a dataset's stated spacing, typed in with one button.

The sidebar's *pixel spacing override* is the kept widget :data:`SPACING_KEY`; a button drawn by
:func:`spacing_button` sets it (per user, in ``st.session_state``) before the next run draws it.
"""
from __future__ import annotations

import streamlit as st

#: Session key of the sidebar's pixel-spacing override (mm per pixel, 0 = use the file's own).
SPACING_KEY = "an_spacing"


def set_spacing_override(spacing_mm: float) -> None:
    """Type ``spacing_mm`` into the sidebar's pixel-spacing override (a button's ``on_click``)."""
    st.session_state[SPACING_KEY] = spacing_mm


def spacing_button(spacing_mm: float, key: str, note: str) -> None:
    """A caption (``note``) on the dataset's pixel spacing and a button (widget ``key``) that types it into
    the sidebar override."""
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.caption(note)
    right.button(f"Measure at {spacing_mm} mm/pixel", key=key, on_click=set_spacing_override, args=(spacing_mm,),
                 help="Sets the sidebar's pixel spacing override.")
