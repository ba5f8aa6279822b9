"""Brain-tumour MRI dashboard: page configuration, navigation and the shared sidebar."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.resources import start_preload

# The icon is a file of the repository (an emoji or a Material icon would be fetched from the internet).
st.set_page_config(page_title="Brain-tumour MRI dashboard", page_icon=str(Path(__file__).parent / "ui" / "icon.png"),
                   layout="wide")
start_preload()          # load the slice models once per server, in the background, before anyone presses Analyse

pages = [
    st.Page("pages/analyze.py", title="Analyse a slice", icon=":material/biotech:", default=True),
    st.Page("pages/batch.py", title="Analyse a batch", icon=":material/dataset:"),
    st.Page("pages/brats_explorer.py", title="Explore BraTS volumes", icon=":material/view_in_ar:"),
    st.Page("pages/model_comparison.py", title="Compare models", icon=":material/leaderboard:"),
]
navigation = st.navigation(pages)

with st.sidebar:
    st.caption("Research and teaching tool — not a medical device. Results must not guide diagnosis or treatment.")

navigation.run()
