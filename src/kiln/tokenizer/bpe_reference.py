"""BPE training in plain Python: the algorithm, readable, and fast enough for a few MB of text.

    1. Split the text into chunks with the pattern (merges never cross a chunk boundary) and count each
       distinct chunk once: "the" appearing 40,000 times is one word with count 40,000.
    2. Every chunk starts as its UTF-8 bytes: ids 0..255.
    3. Count every adjacent pair of ids, weighted by the chunk counts.
    4. The most frequent pair (ties: the smallest pair, so the result is deterministic) becomes a new token
       with the next id; replace it in every chunk that contains it, left to right, non-overlapping.
    5. Repeat 3-4 until the vocabulary has the size asked for (or no pair is left).

The textbook version recounts every pair after every merge: O(merges x text). Here step 3 is incremental:
a merge of (a, b) -> X only changes the pairs around each occurrence, so only the chunks that contain (a, b)
(kept in an index) are touched, their pair counts adjusted by deltas, and a heap finds the next maximum
(entries go stale as counts drop; a stale entry is refreshed when it surfaces). The result is identical to
the textbook loop and to rustbpe's, which `kiln.tokenizer.bpe_train` uses for speed and tests against this.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise

from kiln.tokenizer.patterns import split_text

Pair = tuple[int, int]


def count_chunks(texts: Iterable[str], pattern: str) -> Counter[str]:
    """Step 1: how often each distinct chunk occurs."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split_text(text, pattern))
    return counts


def merge_word(word: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each non-overlapping occurrence of `pair` in `word`, scanning left to right."""
    a, b = pair
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_merges(chunk_counts: dict[str, int], num_merges: int) -> list[Pair]:
    """Steps 2-5: the merges, in order; merge k creates token id 256 + k."""
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())

    pair_counts: Counter[Pair] = Counter()
    where: defaultdict[Pair, set[int]] = defaultdict(set)  # pair -> indices of the words that contain it
    for w, (word, freq) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(word):
            pair_counts[pair] += freq
            where[pair].add(w)

    # Max-heap by count, then smallest pair: Python's heapq is a min-heap, so store (-count, pair).
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count <= 0:
            continue  # the pair has disappeared since this entry was pushed
        if count != -neg_count:
            heapq.heappush(heap, (-count, pair))  # stale: requeue with the current count
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        created: set[Pair] = set()
        for w in where.pop(pair):
            old = words[w]
            new = merge_word(old, pair, new_id)
            if len(new) == len(old):
                continue
            freq = freqs[w]
            # Adjust counts by the difference between the word's pairs before and after the merge.
            for p in pairwise(old):
                pair_counts[p] -= freq
            for p in pairwise(new):
                pair_counts[p] += freq
                if new_id in p:
                    where[p].add(w)
                    created.add(p)
            words[w] = new
        for p in created:
            heapq.heappush(heap, (-pair_counts[p], p))
    return merges


def merges_to_ranks(merges: list[Pair]) -> dict[bytes, int]:
    """Mergeable ranks (token bytes -> id): the 256 bytes, then each merge's concatenated bytes."""
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    ranks: dict[bytes, int] = {}
    for i, token in enumerate(vocab):
        ranks.setdefault(token, i)
    return ranks


def train_reference(texts: Iterable[str], num_merges: int, pattern: str) -> list[Pair]:
    """All of it: texts -> merges."""
    return train_merges(count_chunks(texts, pattern), num_merges)
