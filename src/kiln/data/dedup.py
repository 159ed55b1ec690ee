"""Deduplication: exact (hash of normalised text) and near-duplicate (MinHash LSH, as FineWeb does).

Why both: the web repeats itself. Mirrors, syndicated articles and boilerplate pages are byte-identical or
differ only in a date, a counter or punctuation (exact dedup on normalised text catches those cheaply), and
many more differ by a few edits: a changed header, a sidebar, a comment (MinHash LSH catches those).
FineWeb (Penedo et al. 2024, section 3.4, run with datatrove) deduplicates with MinHash over word 5-grams,
112 hash functions split into 14 bands of 8 rows: two documents become duplicates when all 8 minima of at
least one band agree, which happens with probability 1 - (1 - s^8)^14 for word-5-gram Jaccard similarity s
(about 0.92 at s = 0.8, 0.9996 at s = 0.9, 0.05 at s = 0.5).

Normalisation (`normalize_text`, shared by both methods): Unicode NFKC, then per character: a decimal digit
becomes "0", another letter or digit is lower-cased, anything else (punctuation, symbols, whitespace, combining
marks) becomes a word separator; then each run of "0" becomes one "0" (so "page 3 of 10" and "page 4 of 12",
or two prices, compare equal) and whitespace is collapsed. "Don't" gives "don t", "$1,299.99" gives "0 0 0".
Accents are kept (datatrove also strips diacritics; kiln does not, to keep e.g. French words apart).
The words of that string are the MinHash tokens.

Design for shards and workers. The expensive part, signatures, is a pure function of the text and a seed:
- a word's 64-bit hash is a polynomial over its code points modulo 2^64 put through murmur3's finaliser,
  computed for all words at once from one prefix sum (never Python's `hash`, which is salted per process,
  and no Python code per word, which would cost as much as everything else);
- a 5-gram's 64-bit hash mixes its five word hashes (an order-sensitive sum, wrapping in uint64, and the
  murmur3 finaliser): for dedup as good as hashing the shingle string with xxhash64, and vectorised;
- the 112 permutations are the classic universal hashes h(x) = (a*x + b) mod p, p = 2^61 - 1, as in
  datatrove and datasketch, with a and b derived from blake2b(seed, i) (so they do not depend on numpy's
  random generators either), evaluated *exactly*: x and a are split into 31- and 30-bit halves so that every
  partial product fits in uint64, and the Mersenne identity 2^61 = 1 (mod p) folds the sum (datatrove and
  datasketch let `a * x` wrap modulo 2^64 before `% p`, which is still a hash but not this family);
- each band of 8 minima becomes one 64-bit band hash (same mixing), the key of that band's bucket.
So every process computes the same signatures, and `LSHIndex`, which only sees band hashes, can be built per
shard and merged (`merge` replays the other index's documents in their order, which makes a merged index
equal to one built over both shards in order). Earliest by input order wins: a document is a duplicate when
any of its band buckets already holds an earlier document, and then it is recorded as a duplicate of the
earliest kept document among those buckets (its own buckets point there too, so a chain A ~ B ~ C of
near-duplicates collapses onto A, like datatrove's clusters).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from kiln.data.pipeline import Document, Step

MERSENNE_PRIME = (1 << 61) - 1
NUM_BANDS = 14
ROWS_PER_BAND = 8
NGRAM = 5
DEFAULT_SEED = 1
EMPTY = np.uint64(2**64 - 1)  # the signature of a document with no words: larger than any (a*x + b) mod p

_ZERO, _SPACE = ord("0"), ord(" ")
_U64 = np.uint64
_P = _U64(MERSENNE_PRIME)
_M30 = _U64((1 << 30) - 1)
_M31 = _U64((1 << 31) - 1)
# Odd 64-bit multipliers for the order-sensitive mixes (from the golden ratio and murmur3/splitmix64).
_MIX = (
    0x9E3779B97F4A7C15,
    0xBF58476D1CE4E5B9,
    0x94D049BB133111EB,
    0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53,
    0xD6E8FEB86659FD93,
    0xA0761D6478BD642F,
    0xE7037ED1A0B428DB,
    0x8EBC6AF09C88C6E3,
)
_BLOCK = 4096  # shingles per kernel block: 3 buffers of 112 x 4096 uint64 stay mostly in cache


def _map_char(c: str) -> str:
    """The per-character rule: decimal digit -> "0", other alphanumeric -> lower case (when that is one
    character), anything else (punctuation, symbols, marks, whitespace) -> a space."""
    if c.isdecimal():
        return "0"
    if c.isalnum():
        low = c.lower()
        return low if len(low) == 1 else c
    return " "


_ASCII_TABLE = "".join(_map_char(chr(i)) for i in range(128)).encode("ascii") + bytes(range(128, 256))
_bmp_table: np.ndarray | None = None


def _char_table() -> np.ndarray:
    """`_map_char` for every code point of the Basic Multilingual Plane, as a uint32 lookup table (built once)."""
    global _bmp_table
    if _bmp_table is None:
        table = np.empty(0x10000, dtype=np.uint32)
        for i in range(0x10000):
            table[i] = ord(_map_char(chr(i))) if not 0xD800 <= i < 0xE000 else _SPACE  # surrogates
        _bmp_table = table
    return _bmp_table


def _mapped_codes(text: str) -> np.ndarray:
    """The normalised text as code points (uint32): NFKC, then `_map_char` on every character, then each run of
    "0" becomes one "0" (so words are runs of lower-cased letters and digits, and every number reads "0").

    Implemented with a byte translation table for ASCII text and a numpy lookup table over UTF-32 code points
    otherwise, because a Python regex or per-character loop (~25 ns a character) would cost more than all the
    hashing; the tests check it against the per-character definition."""
    if text.isascii():
        mapped = np.frombuffer(text.encode("ascii").translate(_ASCII_TABLE), dtype=np.uint8).astype(np.uint32)
    else:
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        table = _char_table()
        if int(codes.max()) < 0x10000:
            mapped = table[codes]
        else:  # astral characters (emoji, historic scripts): rare, mapped one by one
            mapped = table[np.minimum(codes, 0xFFFF)]
            for pos in np.flatnonzero(codes >= 0x10000):
                mapped[pos] = ord(_map_char(chr(codes[pos])))
    zero = mapped == _ZERO
    double = zero[1:] & zero[:-1]
    if double.any():
        mapped = mapped[np.concatenate(([True], ~double))]
    return mapped


def normalize_text(text: str) -> str:
    """The text as both dedup methods compare it: the normalised words joined by single spaces."""
    return " ".join(_mapped_codes(text).tobytes().decode("utf-32-le", "surrogatepass").split())


def words_of(text: str) -> list[str]:
    """The normalised words of `text`: the MinHash tokens."""
    return normalize_text(text).split()


def exact_key(text: str) -> bytes:
    """A 128-bit digest of the normalised text: equal keys mean exact (normalised) duplicates."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


# ---------------------------------------------------------------------------------------------- hashing

_BASE = 0x100000001B3  # odd (FNV-1a's prime), so invertible modulo 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_pow: np.ndarray = np.ones(1, dtype=np.uint64)
_inv_pow: np.ndarray = np.ones(1, dtype=np.uint64)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^j and BASE^-j modulo 2^64 for j < n (grown by doubling, kept between calls)."""
    global _pow, _inv_pow
    if len(_pow) < n:
        size = max(n, 2 * len(_pow), 1 << 16)
        _pow = np.cumprod(np.full(size, _BASE, dtype=np.uint64)) * _U64(_BASE_INV)  # wraps modulo 2^64
        _inv_pow = np.cumprod(np.full(size, _BASE_INV, dtype=np.uint64)) * _U64(_BASE)
    return _pow[:n], _inv_pow[:n]


def _fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place on a uint64 array: every input bit affects every output bit."""
    h ^= h >> _U64(33)
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


def word_hashes(text: str) -> np.ndarray:
    """64-bit hashes of the normalised words of `text`, in order (uint64).

    A word's hash is fmix64(sum_j c_j * BASE^j + len * MIX_0) over its code points c_j, modulo 2^64. All
    words of a document are hashed at once from one prefix sum (a word is a difference of two prefix sums,
    shifted back by BASE^-start), so no Python code runs per word."""
    mapped = _mapped_codes(text)
    is_word = mapped != _SPACE
    edges = np.flatnonzero(np.diff(np.concatenate(([False], is_word, [False])).view(np.int8)))
    if len(edges) == 0:
        return np.empty(0, dtype=np.uint64)
    starts, ends = edges[0::2], edges[1::2]
    power, inverse = _powers(len(mapped))
    prefix = np.empty(len(mapped) + 1, dtype=np.uint64)
    prefix[0] = 0
    np.cumsum(mapped * power, out=prefix[1:])  # wraps modulo 2^64, as intended
    h = (prefix[ends] - prefix[starts]) * inverse[starts]
    h += (ends - starts).astype(np.uint64) * _U64(_MIX[0])
    return _fmix64(h)


def _combine(columns: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Order-sensitive 64-bit hash of equal-length uint64 columns: fmix64(sum_k col_k * MIX_k + length * MIX_8).

    `length` separates a short document's single shingle of L < n words from an n-gram."""
    acc = np.full(columns[0].shape, _U64((length * _MIX[8]) & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for k, col in enumerate(columns):
        acc += col * _U64(_MIX[k])  # wraps modulo 2^64, as intended
    return _fmix64(acc)


def shingle_hashes(text: str, ngram: int = NGRAM) -> np.ndarray:
    """64-bit hashes of the word n-grams of the normalised text (uint64, one per position, duplicates kept).

    A text with fewer than `ngram` words (but at least one) is a single shingle of all its words, so short
    documents can still match; a text without words has no shingles."""
    if not 1 <= ngram <= 8:
        raise ValueError("ngram must be between 1 and 8")
    w = word_hashes(text)
    if len(w) == 0:
        return w
    n = min(ngram, len(w))
    m = len(w) - n + 1
    return _combine([w[k : k + m] for k in range(n)], n)


def permutations(num_perm: int = NUM_BANDS * ROWS_PER_BAND, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of the universal hashes, a in [1, p) and b in [0, p), derived from blake2b(seed, i).

    Derived with blake2b rather than a numpy generator so that they are the same in every process, numpy
    version and platform: a stored index stays valid."""
    a = np.empty(num_perm, dtype=np.uint64)
    b = np.empty(num_perm, dtype=np.uint64)
    for i in range(num_perm):
        d = hashlib.blake2b(f"kiln-minhash:{seed}:{i}".encode(), digest_size=16).digest()
        a[i] = 1 + int.from_bytes(d[:8], "little") % (MERSENNE_PRIME - 1)
        b[i] = int.from_bytes(d[8:], "little") % MERSENNE_PRIME
    return a, b


class MinHasher:
    """Computes MinHash signatures (num_perm minima of (a*x + b) mod p over a document's shingle hashes).

    One object holds the parameters and scratch buffers; `signatures` does a whole batch of documents in one
    vectorised pass (numpy calls have a fixed cost, so batching is what makes short documents fast)."""

    def __init__(self, num_perm: int = NUM_BANDS * ROWS_PER_BAND, seed: int = DEFAULT_SEED, ngram: int = NGRAM) -> None:
        self.num_perm, self.seed, self.ngram = num_perm, seed, ngram
        self.a, self.b = permutations(num_perm, seed)
        col = (num_perm, 1)
        self._a0 = (self.a & _M31).reshape(col)  # a = a1 * 2^31 + a0
        self._a1 = (self.a >> _U64(31)).reshape(col)
        self._a1x2 = self._a1 * _U64(2)  # 2^62 = 2 (mod p), folded into the multiplier
        self._bfull = np.repeat(self.b.reshape(col), _BLOCK, axis=1)  # a plain add beats a broadcast one
        self._buf = np.empty((3, num_perm * _BLOCK), dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        """The signature of one text (uint64[num_perm])."""
        return self.signatures([text])[0]

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """Signatures of a batch of texts, shape (len(texts), num_perm); a text without words gets all EMPTY."""
        return self.signatures_from_shingles([shingle_hashes(t, self.ngram) for t in texts])

    def signatures_from_shingles(self, shingles: Sequence[np.ndarray]) -> np.ndarray:
        """Signatures from per-document shingle hashes (uint64 arrays)."""
        out = np.full((self.num_perm, len(shingles)), EMPTY, dtype=np.uint64)
        lengths = np.fromiter((len(s) for s in shingles), dtype=np.int64, count=len(shingles))
        if lengths.sum() == 0:
            return out.T.copy()
        x = np.concatenate([s for s in shingles if len(s)])
        doc_of = np.repeat(np.arange(len(shingles)), lengths)
        x %= _P  # (a*x + b) mod p only depends on x mod p
        x0_all, x1_all = x & _M31, x >> _U64(31)
        for start in range(0, len(x), _BLOCK):
            stop = min(start + _BLOCK, len(x))
            vals = self._kernel(x0_all[start:stop], x1_all[start:stop])
            docs = doc_of[start:stop]
            seg = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            mins = np.minimum.reduceat(vals, seg, axis=1)
            d = docs[seg]
            out[:, d] = np.minimum(out[:, d], mins)
        return out.T.copy()

    def _kernel(self, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
        """(a*x + b) mod p for every permutation (rows) and shingle (columns), exact, in uint64.

        With x = x1 * 2^31 + x0 (x < p, so x1 < 2^30) and a likewise:
            a*x = a1*x1 * 2^62 + (a1*x0 + a0*x1) * 2^31 + a0*x0
        and, modulo p = 2^61 - 1, 2^62 = 2 and mid * 2^31 = (mid >> 30) + ((mid << 31) & p). Every term is below
        2^62, so the sum (with b) stays below 2^64; one fold s = (s & p) + (s >> 61) leaves s < p + 8, i.e.
        the canonical value except when it is below 8 (then s is that plus p), which is fixed exactly, but
        only in the blocks where it happens (about 1 in 2^55 values), after a cheap max test."""
        m = len(x0)
        k = self.num_perm
        s, mid, t = (buf[: k * m].reshape(k, m) for buf in self._buf)
        x0, x1 = x0.reshape(1, m), x1.reshape(1, m)
        np.multiply(self._a0, x0, out=s)
        s += self._bfull[:, :m]
        np.multiply(self._a1, x0, out=mid)
        np.multiply(self._a0, x1, out=t)
        mid += t
        np.multiply(self._a1x2, x1, out=t)
        s += t
        np.right_shift(mid, _U64(30), out=t)
        s += t
        mid <<= _U64(31)
        mid &= _P
        s += mid
        np.right_shift(s, _U64(61), out=t)
        s &= _P
        s += t
        if s.max() >= _P:  # a value v < 8 held as v + p: make it canonical
            np.subtract(s, _P, out=t)
            np.minimum(s, t, out=s)
        return s


def band_hashes(signatures: np.ndarray, bands: int = NUM_BANDS, rows: int = ROWS_PER_BAND) -> np.ndarray:
    """One 64-bit key per band: shape (n, bands) from signatures of shape (n, bands * rows) (or one (bands*rows,)).

    The band index is mixed in, so equal minima in different bands never share a key."""
    sig = np.atleast_2d(signatures)
    if sig.shape[1] != bands * rows:
        raise ValueError(f"signatures have {sig.shape[1]} values, expected {bands} bands x {rows} rows")
    if rows > 8:
        raise ValueError("at most 8 rows per band")
    cube = sig.reshape(len(sig), bands, rows)
    band_ids = np.arange(bands, dtype=np.uint64).reshape(1, bands)
    cols = [cube[:, :, r] for r in range(rows)]
    cols.append(np.broadcast_to(band_ids, (len(sig), bands)))
    mixed = np.zeros((len(sig), bands), dtype=np.uint64)
    for k, col in enumerate(cols):
        mixed += col * _U64(_MIX[k])
    return _fmix64(mixed)


# ---------------------------------------------------------------------------------------------- index


class LSHIndex:
    """Band buckets of the documents added so far, in input order; build per shard and `merge` in order.

    `add` answers whether a document is a near-duplicate of an earlier one and records it either way (a
    duplicate's buckets point at the document it duplicates, so later near-copies of it are caught too). The
    index keeps every added document's band hashes (14 x 8 bytes), which is what lets `merge` replay a shard's
    documents after this index's ones: the result equals one index built over both, in that order."""

    def __init__(self, bands: int = NUM_BANDS, rows: int = ROWS_PER_BAND) -> None:
        self.bands, self.rows = bands, rows
        self.buckets: list[dict[int, int]] = [{} for _ in range(bands)]  # band hash -> ordinal of a kept doc
        self.ids: list[str] = []  # ordinal -> document id, every added document
        self.duplicate_of: list[int] = []  # ordinal -> ordinal of the kept document it duplicates, or -1
        self._keys: list[tuple[int, ...]] = []  # ordinal -> its band hashes

    def __len__(self) -> int:
        return len(self.ids)

    def _check(self, keys: Sequence[int] | np.ndarray) -> tuple[int, ...]:
        keys = tuple(int(k) for k in keys)
        if len(keys) != self.bands:
            raise ValueError(f"expected {self.bands} band hashes, got {len(keys)}")
        return keys

    def _match(self, keys: tuple[int, ...]) -> int:
        """Ordinal of the earliest kept document sharing a bucket with `keys`, or -1."""
        best = -1
        for bucket, key in zip(self.buckets, keys, strict=True):
            hit = bucket.get(key)
            if hit is not None and (best < 0 or hit < best):
                best = hit
        return best

    def query(self, keys: Sequence[int] | np.ndarray) -> str | None:
        """Id of the earliest kept document sharing a band bucket with `keys`, or None; records nothing."""
        hit = self._match(self._check(keys))
        return None if hit < 0 else self.ids[hit]

    def add(self, doc_id: str, keys: Sequence[int] | np.ndarray) -> str | None:
        """Record a document; return the id of the kept document it duplicates, or None when it is kept."""
        keys = self._check(keys)
        hit = self._match(keys)
        ordinal = len(self.ids)
        owner = ordinal if hit < 0 else hit
        for bucket, key in zip(self.buckets, keys, strict=True):
            bucket.setdefault(key, owner)
        self.ids.append(doc_id)
        self.duplicate_of.append(hit)
        self._keys.append(keys)
        return None if hit < 0 else self.ids[hit]

    def merge(self, other: LSHIndex) -> dict[str, str]:
        """Append `other`'s documents (a later shard) in their order, as if they had been added here.

        Returns {id: id of the kept document it duplicates} for the documents `other` had kept that are
        duplicates of documents here: the ones a shard's worker passed but the merged view must drop."""
        if (other.bands, other.rows) != (self.bands, self.rows):
            raise ValueError("cannot merge indexes with different band settings")
        newly: dict[str, str] = {}
        for doc_id, keys, was in zip(other.ids, other._keys, other.duplicate_of, strict=True):
            dup = self.add(doc_id, keys)
            if dup is not None and was < 0:
                newly[doc_id] = dup
        return newly

    def kept_ids(self) -> list[str]:
        """Ids of the documents that were not duplicates, in order."""
        return [i for i, d in zip(self.ids, self.duplicate_of, strict=True) if d < 0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LSHIndex):
            return NotImplemented
        return (
            (self.bands, self.rows) == (other.bands, other.rows)
            and self.ids == other.ids
            and self.duplicate_of == other.duplicate_of
            and self._keys == other._keys
            and self.buckets == other.buckets
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


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


class MinHashDedup(Step):
    """Drop near-duplicates: documents sharing a MinHash LSH band bucket with an earlier document.

    FineWeb's settings by default (word 5-grams, 14 bands x 8 rows). Documents are hashed in batches of
    `batch_size` (vectorised), then decided one by one in input order: a duplicate is dropped with reason
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
        ngram: int = NGRAM,
        seed: int = DEFAULT_SEED,
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        self.index = LSHIndex(bands, rows) if index is None else index
        if (self.index.bands, self.index.rows) != (bands, rows):
            raise ValueError("the index's band settings differ from the step's")
        self.hasher = MinHasher(bands * rows, seed, ngram)
        self.batch_size = batch_size

    def _decide_batch(self, batch: list[Document]) -> Iterator[Document]:
        shingles = [shingle_hashes(d.text, self.hasher.ngram) for d in batch]
        keys = band_hashes(self.hasher.signatures_from_shingles(shingles), self.index.bands, self.index.rows)
        for doc, sh, k in zip(batch, shingles, keys.tolist(), strict=True):
            dup = self.index.add(doc.id, k) if len(sh) else None
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
