"""Kinds and schemas: what every object looks like, with no behaviour beyond pure functions."""
