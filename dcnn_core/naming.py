"""Names made safe for file names and Keras model names."""

from __future__ import annotations


def slug(name: str, default: str = "model") -> str:
    """``name`` in lower case, every character but letters and digits as ``_``, no ``_`` at the ends.

    "Simple CNN" → "simple_cnn"; ``default`` when nothing is left.
    """
    return "".join(ch.lower() if ch.isalnum() else "_" for ch in str(name)).strip("_") or default


def counted(count: int, noun: str) -> str:
    """'1 epoch', '3 epochs': a count with its noun, singular for one (nouns that add an s)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
