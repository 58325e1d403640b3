"""Showing user-made text (set, class, design names) as typed, never as Markdown or HTML."""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&])")


def plain(text: str) -> str:
    """User text for a Markdown element (st.markdown, st.error, st.caption, st.toast…), shown exactly as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def plain_text(text: str) -> str:
    """User text for Plotly (titles, legends, tick and hover labels): it reads <b>, <a href>… as markup, but shows entities literally."""
    return html.escape(str(text), quote=False)
