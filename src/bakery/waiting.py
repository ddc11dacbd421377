"""Bounded waits: how often they look again, and how long one was, in words."""

from __future__ import annotations

POLL_S = 5.0


def duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole % 60 == 0:
        minutes = whole // 60
        return f"{minutes} minute{'s' * (minutes != 1)}"
    return f"{whole // 60}m{whole % 60:02d}s"
