"""Stopping on SIGINT/SIGTERM at a step boundary, so an interrupted run leaves a checkpoint to resume from."""

from __future__ import annotations

import contextlib
import signal
from typing import Any


class StopSignals:
    """While active, SIGINT/SIGTERM only set `caught`; the loop checks it once per step, saves a checkpoint and
    exits. A second Ctrl-C stops at once (KeyboardInterrupt). The previous handlers come back on exit."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.caught is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.caught = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
