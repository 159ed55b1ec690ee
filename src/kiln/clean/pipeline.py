"""The cleaning pipeline's building blocks: a `Document` and a `Step` that keeps or drops documents, with reasons.

As in datatrove, a step is a small class with one job: it takes an iterator of documents and yields the
ones it keeps (possibly changed: extraction fills `text`, PII redaction rewrites it). Unlike a bare
filter function, every step counts what it saw, kept and dropped *by reason* and how long it took, and
keeps a few dropped documents per reason, so `kiln clean` can say why every document was dropped and the
playground can show examples. Steps compose by chaining iterators: `run_steps(docs, [a, b, c])`.

A filter step only implements `decide(doc) -> reason or None`; a transform step overrides `process`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """One web document on its way through the pipeline."""

    id: str
    text: str = ""  # the extracted text (empty until extraction for HTML input)
    url: str = ""
    html: bytes | str | None = None  # raw page, when the input was HTML (dropped after extraction)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dropped:
    """A dropped document as kept for inspection: who dropped it and why, plus the start of its text."""

    id: str
    url: str
    step: str
    reason: str
    text: str


@dataclass
class StepStats:
    """What one step saw: documents in, kept, dropped by reason, and its own time."""

    name: str
    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "in": self.seen,
            "kept": self.kept,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped.most_common()),
            "seconds": round(self.seconds, 4),
        }

    def add(self, other: StepStats) -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.seconds += other.seconds


class Step:
    """Base class: counts, timing and dropped samples; subclasses implement `decide` or `process`."""

    name = "step"
    samples_per_reason = 3  # dropped documents kept per reason, for the data explorer

    def __init__(self) -> None:
        self.stats = StepStats(self.name)
        self.samples: list[Dropped] = []
        self._sampled: Counter[str] = Counter()

    def decide(self, doc: Document) -> str | None:
        """None to keep `doc`, or the reason to drop it (a short, stable, machine-countable string)."""
        return None

    def drop(self, doc: Document, reason: str) -> None:
        """Count a dropped document and keep it as a sample if this reason has few so far."""
        self.stats.dropped[reason] += 1
        doc.metadata["dropped_by"] = f"{self.name}:{reason}"
        if self._sampled[reason] < self.samples_per_reason:
            self._sampled[reason] += 1
            self.samples.append(Dropped(doc.id, doc.url, self.name, reason, doc.text[:2000]))

    def process(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Default: keep the documents `decide` accepts."""
        for doc in docs:
            reason = self.decide(doc)
            if reason is None:
                yield doc
            else:
                self.drop(doc, reason)

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Run `process` and account for every document that went in and came out, and the time spent
        inside this step only (not in the steps before it, which produce `docs` lazily)."""
        clock = 0.0

        def counted(source: Iterable[Document]) -> Iterator[Document]:
            nonlocal clock
            it = iter(source)
            while True:
                pause = time.perf_counter()
                try:
                    doc = next(it)
                except StopIteration:
                    clock -= time.perf_counter() - pause
                    return
                clock -= time.perf_counter() - pause  # time spent upstream is not ours
                self.stats.seen += 1
                yield doc

        out = self.process(counted(docs))
        while True:
            start = time.perf_counter()
            try:
                doc = next(out)
            except StopIteration:
                clock += time.perf_counter() - start
                break
            clock += time.perf_counter() - start
            self.stats.kept += 1
            yield doc
        self.stats.seconds += clock


def run_steps(docs: Iterable[Document], steps: list[Step]) -> Iterator[Document]:
    """Chain the steps lazily: a document flows through all of them before the next is read (steps that work
    in batches, extraction and MinHash dedup, read a batch ahead)."""
    stream: Iterable[Document] = docs
    for step in steps:
        stream = step(stream)
    yield from stream
