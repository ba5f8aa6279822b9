"""Streamlit helpers shared by the pages (cached resources, input widgets, downloads)."""
