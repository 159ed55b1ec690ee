"""Stand-in `kiln clean` steps in an importable module (not a test file), for runners whose workers import kiln
afresh: a Ray worker cannot see classes defined in a test module's namespace or a monkeypatched registry, but it
can import `clean_steps` once `tests/` is on its PYTHONPATH (see kiln.clean.executors.worker_runtime_env)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from kiln.clean.pipeline import Document, Step


class ShortFilter(Step):
    """Drops documents shorter than `min_chars`."""

    name = "short"

    def __init__(self, min_chars: int = 10) -> None:
        super().__init__()
        self.min_chars = min_chars

    def decide(self, doc: Document) -> str | None:
        return "too_short" if len(doc.text) < self.min_chars else None


class Upper(Step):
    """A transform: upper-cases the text (stands in for PII redaction, which rewrites text)."""

    name = "upper"

    def process(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            doc.text = doc.text.upper()
            yield doc


class SeenDedup(Step):
    """A global step: drops a text seen before (across all shards, first one wins)."""

    name = "seen"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, str] = {}

    def decide(self, doc: Document) -> str | None:
        if doc.text in self.seen:
            doc.metadata["duplicate_of"] = self.seen[doc.text]
            return "duplicate"
        self.seen[doc.text] = doc.id
        return None


class Boom(Step):
    """Fails on a document whose text is `trigger`: a crash inside a worker must reach the driver."""

    name = "boom"

    def __init__(self, trigger: str = "boom") -> None:
        super().__init__()
        self.trigger = trigger

    def decide(self, doc: Document) -> str | None:
        if doc.text == self.trigger:
            raise RuntimeError(f"boom in {doc.id}")
        return None


# For monkeypatching kiln.clean.registry.STEPS: name -> (module, class, runs in phase 2).
REGISTRY: dict[str, tuple[str, str, bool]] = {
    "short": (__name__, "ShortFilter", False),
    "upper": (__name__, "Upper", False),
    "seen": (__name__, "SeenDedup", True),
    "boom": (__name__, "Boom", False),
}
STEPS = [{"name": "short", "min_chars": 10}, {"name": "upper"}, {"name": "seen"}]


def marked_job(folder: str, i: int) -> int:
    """An executor job: job 0 fails at once, every other one sleeps a little and leaves a file named for it (so a
    test can see which jobs ran at all)."""
    import time
    from pathlib import Path

    if i == 0:
        raise RuntimeError("job 0 fails")
    time.sleep(0.3)
    (Path(folder) / f"job_{i}").touch()
    return i
