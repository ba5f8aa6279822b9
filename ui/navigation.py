"""Keep every page inside the app's own navigation (``streamlit_app.py``), even on a deep link.

Streamlit decides once per server whether the app uses the legacy ``pages/`` folder mode: a
``pages/`` folder exists, so until the main script has called ``st.navigation`` once, a deep
link such as ``/model_comparison`` opened first on a fresh server runs that page on its own,
without the page configuration, the navigation titles or the disclaimer of the main script.
"""
from __future__ import annotations

import streamlit as st


#: Session flag: this session has already run a page (inside the app's navigation, or rerun into it).
SEEN_KEY = "_app_navigation_seen"


def ensure_app_navigation() -> None:
    """Call first on every page: if Streamlit is still in its legacy folder mode, leave it and
    rerun, so the main script runs and ``st.navigation`` opens the page the link asked for.

    Only a session's first run is rerun: a rerun drops the widget event of the run it replaces,
    and Streamlit's AppTest re-enters the folder mode on every run.
    """
    first_run = not st.session_state.get(SEEN_KEY)
    st.session_state[SEEN_KEY] = True
    try:  # internal flag of Streamlit's pages manager (streamlit>=1.36); without it there is nothing to fix
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        if first_run:
            st.rerun()
