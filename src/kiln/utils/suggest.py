"""The "did you mean" of every name a user types: a stage, a config key, a preset, a tokenizer, a task, a path.

One helper so every message reads the same way and every mistake gets the same kind of guess: difflib's closest
match, case-insensitive, and otherwise a word of the name inside a longer one (`steps` -> `max_steps`, where
difflib alone prefers `eps`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

# Names other tools give settings kiln has under another name (nanoGPT's max_iters, Hugging Face's learning_rate).
SYNONYMS = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "max_iters": "max_steps",
    "iters": "max_steps",
    "num_steps": "max_steps",
    "max_length": "max_new_tokens",
    "num_tokens": "max_new_tokens",
    "n_samples": "num_samples",
}


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice `word` most likely meant, or None when none is close.

    A choice that holds `word` as whole `_`/`-`-separated words wins over a merely similar spelling: someone who
    writes `steps` means `max_steps` (or `warmup_steps`), not `eps`."""
    by_lower = {c.lower(): c for c in choices}
    low = word.lower().replace("-", "_")
    if low in by_lower:
        return by_lower[low]
    if SYNONYMS.get(low) in by_lower:
        return by_lower[SYNONYMS[low]]
    parts = [p for p in low.split("_") if p]
    holding = [c for c in by_lower if parts and _has_words(c.replace("-", "_").split("_"), parts)]
    if holding:
        return by_lower[max(holding, key=lambda c: difflib.SequenceMatcher(None, low, c).ratio())]
    close = difflib.get_close_matches(low, list(by_lower), n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None


def _has_words(words: list[str], parts: list[str]) -> bool:
    """Whether `parts` appear in `words` in order, as a contiguous run (["max", "steps"] holds ["steps"])."""
    n = len(parts)
    return any(words[i : i + n] == parts for i in range(len(words) - n + 1))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The end of an error message: `; did you mean 'x'?` for the closest of `choices`, or nothing."""
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match else ""


def near_path(path: str | Path, accept: object = None) -> Path | None:
    """A sibling of `path` whose name is close to its name (a mistyped directory), or None. With `accept` (a
    function of a Path), only siblings it accepts count, e.g. only checkpoints. A missing parent is tried the same
    way, one level up."""
    original = Path(path)
    parent = original.parent
    if not parent.is_dir():
        parent = near_path(parent)  # type: ignore[assignment]
        if parent is None:
            return None
    try:
        names = [p.name for p in parent.iterdir() if accept is None or accept(p)]  # type: ignore[operator]
    except OSError:
        return None
    match = closest(original.name, names)
    return parent / match if match is not None and parent / match != original else None
