"""Validation helpers for decoded teacher replies: raise ``TeacherOutputError`` so the item is retried.

Example:
    >>> bounded_number({"score": 0.8}, "score", 0.0, 1.0)
    0.8
"""

from __future__ import annotations

import math

from embpipe.llm.teacher import TeacherOutputError


def bounded_number(reply: dict, field: str, low: float, high: float) -> float:
    """``reply[field]`` as a float within [low, high]; anything else is an unusable reply."""
    value = reply.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TeacherOutputError(f"{field!r} is not a number: {value!r}")
    if not low <= value <= high:
        raise TeacherOutputError(f"{field!r} = {value} is outside [{low}, {high}]")
    return float(value)
