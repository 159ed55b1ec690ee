"""Stop strings while streaming.

Tokens are decoded to text a piece at a time, and a stop string can be split across pieces ("<|e", "nd",
"|>"). The stop string and everything after it must never reach the user, so any tail of the text that
might still turn into a stop string is held back until it either completes one or is known not to.

The result is defined on the whole text, independent of how it was split into pieces: it is cut just
before the *earliest-starting* occurrence of any stop string (see :func:`truncate_at_stop`).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_STOP_CHARS", "StopMatcher", "truncate_at_stop"]

# Longest stop string accepted. Matching costs memory linear in the stops' length and time per token that grows
# with it; a cap keeps one request from holding a server's worker (a stop string is a word or a marker, not a
# document).
MAX_STOP_CHARS = 4096


def _check_stops(stops: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stops, str):
        stops = (stops,)
    out = []
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop strings must be non-empty str, got {s!r}")
        if len(s) > MAX_STOP_CHARS:
            raise ValueError(f"stop strings must be at most {MAX_STOP_CHARS} characters, got one of {len(s)}")
        if s not in out:
            out.append(s)
    return tuple(out)


def _earliest(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(index, stop) of the earliest occurrence of any stop in ``text``; on a tie the shorter stop, which is
    the one that completes first when streaming."""
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best is None or (i, len(s)) < (best[0], len(best[1]))):
            best = (i, s)
    return best


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Non-streaming case: ``text`` cut just before the earliest occurrence of any stop string, and whether
    one occurred."""
    hit = _earliest(text, _check_stops(stops))
    if hit is None:
        return text, False
    return text[: hit[0]], True


class StopMatcher:
    """Feed decoded text with :meth:`push`; emit only what it returns; call :meth:`flush` at the end.

    Invariant: the concatenation of everything returned by ``push`` and ``flush`` equals
    ``truncate_at_stop(full_text, stops)[0]`` however the text was split. Only the longest suffix of the
    pending text that is a proper prefix of some stop string is held back.

    ``stopped`` normally becomes true on the push that completes a stop string. The one exception: when a
    stop string occurs *inside* a longer one (stops ``["<|end|>", "end"]``) and the longer one may still be
    completing from an earlier position, the earlier candidate decides the cut, so the verdict waits for it
    (at most ``len(longest stop) - 1`` characters). If generation ends before then, :meth:`flush` applies
    the already-complete stop and sets ``stopped``; so read ``stopped`` after ``flush`` to know whether the
    text ended on a stop string.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops: tuple[str, ...] = _check_stops(stops)
        self._pending = ""
        self._emitted: list[str] = []
        self._stopped = False
        self._matched: str | None = None

    @property
    def text(self) -> str:
        """Everything emitted so far (never includes a stop string or anything after it)."""
        if len(self._emitted) > 1:
            self._emitted = ["".join(self._emitted)]
        return self._emitted[0] if self._emitted else ""

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def matched(self) -> str | None:
        """The stop string that ended the text, or None."""
        return self._matched

    @property
    def pending(self) -> str:
        """Text held back because it might be the start of a stop string."""
        return self._pending

    def _held_from(self, buf: str) -> int:
        """Start of the longest suffix of ``buf`` that is a proper prefix of some stop (len(buf) if none).

        Memory stays linear in the stops' length (a table of every prefix would be quadratic: one 100 KB stop
        string once took gigabytes): for each stop, only positions in the last len(stop) - 1 characters where
        the stop's first character occurs are candidates, each checked by one C-level comparison."""
        best = len(buf)
        for stop in self.stops:
            i = buf.find(stop[0], max(0, len(buf) - len(stop) + 1))
            while i != -1 and i < best:
                if stop.startswith(buf[i:]):
                    best = i  # the earliest candidate of this stop is its longest suffix
                    break
                i = buf.find(stop[0], i + 1)
        return best

    def _emit(self, s: str) -> str:
        if s:
            self._emitted.append(s)
        return s

    def _stop(self, buf: str, index: int, stop: str) -> str:
        self._stopped = True
        self._matched = stop
        self._pending = ""
        return self._emit(buf[:index])

    def push(self, text: str) -> tuple[str, bool]:
        """Feed newly decoded text; returns (text safe to emit now, stopped)."""
        if self._stopped:
            return "", True
        if not self.stops:
            return self._emit(text), False
        buf = self._pending + text
        hit = _earliest(buf, self.stops)
        held = self._held_from(buf)
        if hit is not None and hit[0] <= held:
            # No stop can still start before this one, so it is final.
            return self._stop(buf, *hit), True
        # Either no stop yet, or one whose cut could still be pre-empted by an earlier partial match, which
        # is the held suffix; everything before the held suffix is safe.
        self._pending = buf[held:]
        return self._emit(buf[:held]), False

    def flush(self) -> str:
        """End of generation: release what was held back (up to a stop string already complete in it)."""
        if self._stopped:
            return ""
        buf, self._pending = self._pending, ""
        hit = _earliest(buf, self.stops)
        if hit is not None:
            return self._stop(buf, *hit)
        return self._emit(buf)
