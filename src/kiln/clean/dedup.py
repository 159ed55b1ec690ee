"""Deduplication steps: exact (hash of normalised text) and near-duplicate (MinHash LSH, as FineWeb does).

Why both: the web repeats itself. Mirrors, syndicated articles and boilerplate pages are byte-identical or
differ only in a date, a counter or punctuation (exact dedup on normalised text catches those cheaply), and
many more differ by a few edits: a changed header, a sidebar, a comment (MinHash LSH catches those).
Normalisation, signatures, banding and the index — and why kiln bands 16 x 7 with verification where
FineWeb used 14 x 8 — are in `kiln.clean.minhash`; this module holds the two pipeline steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from kiln.clean.minhash import (
    DEFAULT_SEED,
    EMPTY,
    FINEWEB_BANDS,
    FINEWEB_ROWS,
    NGRAM,
    NUM_BANDS,
    NUM_PERM,
    ROWS_PER_BAND,
    VERIFY,
    LSHIndex,
    MinHasher,
    band_hashes,
    batch_shingle_hashes,
    detection_probability,
    exact_key,
    normalize_text,
    permutations,
    shingle_hashes,
    word_hashes,
    words_of,
)
from kiln.clean.pipeline import Document, Step

__all__ = [
    "DEFAULT_SEED",
    "EMPTY",
    "FINEWEB_BANDS",
    "FINEWEB_ROWS",
    "NGRAM",
    "NUM_BANDS",
    "NUM_PERM",
    "ROWS_PER_BAND",
    "VERIFY",
    "ExactDedup",
    "LSHIndex",
    "MinHashDedup",
    "MinHasher",
    "band_hashes",
    "batch_shingle_hashes",
    "detection_probability",
    "exact_key",
    "normalize_text",
    "permutations",
    "shingle_hashes",
    "word_hashes",
    "words_of",
]


# ---------------------------------------------------------------------------------------------- steps


class ExactDedup(Step):
    """Drop documents whose normalised text (see `normalize_text`) was seen before; the first one is kept.

    Why: exact copies (mirrors, re-crawls, boilerplate pages that differ only in a date or punctuation) are
    the cheapest duplicates to find, so they are removed before the costlier MinHash step. The dropped
    document's `metadata["duplicate_of"]` names the kept one. Pass the same `seen` dict to several steps (or
    a dict built from earlier shards) to deduplicate across shards."""

    name = "exact_dedup"

    def __init__(self, seen: dict[bytes, str] | None = None) -> None:
        super().__init__()
        self.seen: dict[bytes, str] = {} if seen is None else seen

    def decide(self, doc: Document) -> str | None:
        key = exact_key(doc.text)
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = doc.id
            return None
        doc.metadata["duplicate_of"] = first
        return "exact_duplicate"


MAX_BANDS = 256  # 256 x 8 = 2048 hashes a document: far past any useful curve (FineWeb: 14 x 8)
MAX_BATCH = 1 << 16


def _within(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{option} must be between {low} and {high}, got {value}")


class MinHashDedup(Step):
    """Drop near-duplicates: documents sharing a MinHash LSH band bucket with an earlier document (and, when
    `verify` > 0, agreeing with it on at least that fraction of the signature's minima).

    Word 5-grams and 112 hashes as FineWeb, banded 16 x 7 with verify = 0.7 by default (found more of the
    near-duplicates at Jaccard 0.8 than FineWeb's 14 x 8, with fewer false matches; see the module doc);
    `bands=14, rows=8, verify=0` is FineWeb's exact rule. Documents are hashed in batches of `batch_size`
    (vectorised), then decided one by one in input order: a duplicate is dropped with reason
    "minhash_duplicate" and `metadata["duplicate_of"]` = the kept document's id. Documents without words are
    kept and not indexed (nothing to compare; exact dedup handles empty copies). Pass an `index` holding
    earlier shards (or share one) to deduplicate across shards; `index` is public for merging afterwards."""

    name = "minhash_dedup"

    def __init__(
        self,
        index: LSHIndex | None = None,
        *,
        bands: int = NUM_BANDS,
        rows: int = ROWS_PER_BAND,
        verify: float = VERIFY,
        ngram: int = NGRAM,
        seed: int = DEFAULT_SEED,
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        # Checked before anything is allocated: the hasher holds bands x rows x 2 x 512 uint64 of scratch (a
        # million bands asked for terabytes).
        _within("bands", bands, 1, MAX_BANDS)
        _within("rows", rows, 1, 8)  # a band's minima are mixed into one 64-bit key, at most 8 of them
        _within("ngram", ngram, 1, 8)
        _within("batch_size", batch_size, 1, MAX_BATCH)
        _within("seed", seed, 0, 2**63 - 1)
        if not 0 <= verify <= 1:
            raise ValueError(f"verify must be between 0 (off) and 1, got {verify}")
        self.index = LSHIndex(bands, rows, verify) if index is None else index
        if self.index.settings != (bands, rows, float(verify)):
            raise ValueError("the index's band or verify settings differ from the step's")
        self.hasher = MinHasher(bands * rows, seed, ngram)
        self.batch_size = batch_size

    def _decide_batch(self, batch: list[Document]) -> Iterator[Document]:
        shingles, counts = batch_shingle_hashes([d.text for d in batch], self.hasher.ngram)
        sigs = self.hasher._minima(shingles, counts)
        keys = band_hashes(sigs, self.index.bands, self.index.rows)
        for doc, n, k, sig in zip(batch, counts.tolist(), keys.tolist(), sigs, strict=True):
            dup = self.index.add(doc.id, k, sig) if n else None
            if dup is None:
                yield doc
            else:
                doc.metadata["duplicate_of"] = dup
                self.drop(doc, "minhash_duplicate")

    def process(self, docs: Iterable[Document]) -> Iterator[Document]:
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield from self._decide_batch(batch)
                batch = []
        if batch:
            yield from self._decide_batch(batch)
