"""Hand a choice from one page to another.

Widget state does not survive a page switch, so the sending page stores a one-shot request in
the session and switches; the receiving page takes it (once) before drawing its widgets and
turns it into their values.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

#: An image for the Analyse page's held-out input: ``{"set": "testing"|"figshare", "relative": path}``.
ANALYSE_REQUEST = "an_ho_request"
#: A public case for the BraTS explorer: ``{"case": case id, "segment": bool}``.
BRATS_REQUEST = "bx_request"


def hand_over(page: str, key: str, request: dict[str, Any]) -> None:
    """Store ``request`` under ``key`` and open ``page`` (a path such as ``pages/analyze.py``)."""
    st.session_state[key] = request
    st.switch_page(page)


def take(key: str) -> dict[str, Any] | None:
    """The request stored under ``key``, removed so that it applies once; ``None`` when there is none."""
    return st.session_state.pop(key, None)
