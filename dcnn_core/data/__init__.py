"""Data: the built-in sets, generated Shapes, and your own images (checked before they are read)."""
