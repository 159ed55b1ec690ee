"""Prompts for `kiln rl`: any conversation record (the last assistant turn, if any, is dropped: the policy writes
it), plus the fields its reward reads (`words`, `answer`, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kiln.posttrain.conversations import ConversationError, examples, to_turns


def read_prompts(paths: list[str | Path], max_examples: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        for where, record in examples(path):
            if isinstance(record, dict) and "prompt" in record and isinstance(record["prompt"], str):
                turns = [("user", record["prompt"])]
            else:
                rec = dict(record) if isinstance(record, dict) else record
                if isinstance(rec, dict) and "question" in rec:
                    rec = {"prompt": rec["question"], "completion": ""}
                turns = to_turns(rec, where)
            while turns and turns[-1][0] == "assistant":
                turns = turns[:-1]
            if not turns or turns[-1][0] != "user":
                raise ConversationError(f"{where}: a prompt must end with a user turn")
            out.append({**record, "prompt_turns": turns, "source": where})
    if not out:
        raise ConversationError(f"no prompts in {', '.join(map(str, paths))}")
    return out[:max_examples]


class PromptLoader:
    """Shuffled prompt indices epoch after epoch, each process its own share; (epoch, position) is the state."""

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.epoch, self.pos = 0, 0
        self._order = np.random.default_rng([self.seed, 0]).permutation(n)

    def next_indices(self) -> list[int]:
        rows: list[int] = []
        while len(rows) < self.batch * self.world:
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            take = min(self.batch * self.world - len(rows), self.n - self.pos)
            rows.extend(self._order[self.pos : self.pos + take].tolist())
            self.pos += take
        return rows[self.rank * self.batch : (self.rank + 1) * self.batch]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "rows": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("rows") != self.n:
            raise ValueError(f"the prompts changed: the run was saved with {state.get('rows')}, now {self.n}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
