"""Brain-tumour MRI dashboard: page configuration, navigation and the shared sidebar."""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Brain-tumour MRI dashboard", page_icon=":material/neurology:", layout="wide")

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
