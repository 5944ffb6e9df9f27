"""The Streamlit console: the entry script (app.py) and the UI pieces pages share.

Pages live in ../pages (never beside app.py: a `pages/` folder next to the entry script
turns on Streamlit's legacy auto-discovery, which lets a direct link skip the entry script)."""
