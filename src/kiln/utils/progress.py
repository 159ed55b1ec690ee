"""Progress bars for every stage: tqdm on a terminal, one plain line per update in a file or a pipe.

tqdm redraws its bar with carriage returns, which a terminal shows as one updating line but a log file (`kiln
train ... > train.log 2>&1`, CI, `nohup`) keeps as one endless line with hundreds of copies. Where the stream is
not a terminal, `progress_bar` writes each update as its own line, at most one every `LINE_INTERVAL_S` seconds (and
the last one always), without the bar's block characters.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

LINE_INTERVAL_S = 10.0
# No bar (block characters mean nothing in a log); `total` may be unknown (a crawl), so no percentage either.
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether `stream` is an interactive terminal (a closed or odd stream counts as not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineWriter:
    """A file for tqdm that turns its redraws into lines: the carriage returns and padding dropped, each status
    written as one line, no more often than `interval` seconds unless `final` (set by the bar as it closes)."""

    def __init__(self, stream: IO[str], interval: float | None = None) -> None:
        self.stream = stream
        self.interval = LINE_INTERVAL_S if interval is None else interval
        self.last = -float("inf")
        self.final = False

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if not line:  # tqdm's clears and its closing newline: each status line is already complete
            return
        now = time.monotonic()
        if self.final or now - self.last >= self.interval:
            self.last = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, ...: the stream's
        return getattr(self.stream, name)


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """`tqdm(iterable, **kwargs)` on stderr (or `file=`): an updating bar on a terminal (or in a notebook), and
    line-based output everywhere else."""
    stream = kwargs.pop("file", None) or sys.stderr
    if is_terminal(stream) or "ipykernel" in sys.modules:
        from tqdm.auto import tqdm

        return tqdm(iterable, file=stream, **kwargs)
    writer = LineWriter(stream)
    options = {**kwargs, "file": writer, "dynamic_ncols": False, "ncols": None}
    options["mininterval"] = max(kwargs.get("mininterval", 0.1), LINE_INTERVAL_S)
    options.setdefault("bar_format", LINE_FORMAT)
    bar = _line_bar_class()(iterable, **options)
    bar.line_writer = writer
    return bar


def _line_bar_class() -> type:
    from tqdm import tqdm

    class LineBar(tqdm):  # type: ignore[misc]
        """tqdm whose last status (at close) is always written, however soon after the previous one."""

        def close(self) -> None:
            writer = getattr(self, "line_writer", None)
            if writer is not None:
                writer.final = True
            super().close()

    return LineBar
