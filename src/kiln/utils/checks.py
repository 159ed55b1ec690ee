"""One-line validation for configs: each check is a condition and the message a user needs to fix it."""

from __future__ import annotations


def require(ok: bool, message: str) -> None:
    """Raise ValueError(message) unless ok (configs name the field, its allowed range and the bad value)."""
    if not ok:
        raise ValueError(message)
