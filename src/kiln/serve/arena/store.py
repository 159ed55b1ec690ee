"""The arena's battles and votes.

A battle (two answers waiting for a vote) lives in memory only: it is cheap to run again, and a battle nobody
voted on is no data. A vote is one JSON line appended to `votes.jsonl` in the arena directory with a single
`write` on a file opened with O_APPEND, then fsync'd, so concurrent votes never interleave and a vote the server
acknowledged survives a crash or restart. A torn last line (power cut mid-write) is skipped when read, with a
warning, rather than making every later read fail.

The votes file is the record: the leaderboard and the DPO export are computed from it on each request.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("kiln.serve")

VOTES_FILE = "votes.jsonl"
MAX_PENDING = 1000  # battles waiting for a vote; past it the oldest is forgotten (its vote gets 400)
WINNERS = ("a", "b", "tie", "both_bad")


@dataclass
class Battle:
    """Two models' answers to one prompt; which model is which side stays on the server until the vote."""

    id: str
    mode: str
    """completion or chat."""
    prompt: str
    """The completion prompt, or the user's message in chat mode."""
    system: str | None
    """Chat mode's system prompt, if any."""
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str
    settings: dict[str, Any] = field(default_factory=dict)
    """The sampling settings both sides used (temperature, top_p, ..., max_tokens, seed)."""
    created: float = field(default_factory=time.time)


def new_battle_id() -> str:
    return f"battle-{uuid.uuid4().hex[:24]}"


class VoteError(ValueError):
    """A vote that cannot be recorded: `reason` is unknown_battle or already_voted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ArenaStore:
    """Battles awaiting a vote (in memory) and the votes (in `directory / votes.jsonl`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / VOTES_FILE
        self._pending: OrderedDict[str, Battle] = OrderedDict()
        self._lock = threading.Lock()
        try:
            self._voted: set[str] = {v["id"] for v in self.votes()}
        except OSError as e:  # the server still starts; voting and the leaderboard answer 503 until it is fixed
            log.warning("cannot read the arena's votes %s: %s", self.path, e)
            self._voted = set()

    def add(self, battle: Battle) -> None:
        with self._lock:
            self._pending[battle.id] = battle
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)

    def vote(self, battle_id: str, winner: str) -> dict[str, Any]:
        """Record `winner` for the battle and return the vote's record (models revealed). VoteError for a battle
        that is unknown or already voted on; OSError if the votes file cannot be written (the battle stays
        votable)."""
        with self._lock:
            if battle_id in self._voted:
                raise VoteError("already_voted", f"the battle '{battle_id}' has already been voted on")
            battle = self._pending.pop(battle_id, None)
            if battle is None:
                raise VoteError("unknown_battle", f"no battle '{battle_id}' is waiting for a vote")
            record = {**asdict(battle), "winner": winner, "voted": time.time()}
            try:
                self._append(record)
            except OSError:
                self._pending[battle_id] = battle
                raise
            self._voted.add(battle_id)
        return record

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self.directory.mkdir(parents=True, exist_ok=True)
        # O_BINARY (Windows only): no newline translation, the line is written as encoded
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.lseek(fd, size - 1, os.SEEK_SET) >= 0 and os.read(fd, 1) != b"\n":
                line = b"\n" + line  # after a torn last line: start a new line, or this vote would be torn too
            os.write(fd, line)  # one write of one line: O_APPEND places it whole at the end
            os.fsync(fd)
        finally:
            os.close(fd)

    def votes(self) -> list[dict[str, Any]]:
        """Every recorded vote, oldest first (a malformed line is skipped with a warning); none if there is no
        votes file yet, OSError if it cannot be read."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("%s:%d: not a JSON line (a torn write?); skipped", self.path, n)
                continue
            if isinstance(record, dict) and record.get("winner") in WINNERS and "id" in record:
                out.append(record)
            else:
                log.warning("%s:%d: not an arena vote; skipped", self.path, n)
        return out
