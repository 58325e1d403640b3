"""Streamlit pieces shared by the pages: session state, cached resources, the frame."""
