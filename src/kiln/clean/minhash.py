"""The machinery of deduplication: text normalisation, exact keys, MinHash signatures and the LSH index.

The pipeline steps that use it are in `kiln.clean.dedup`.


Why both: the web repeats itself. Mirrors, syndicated articles and boilerplate pages are byte-identical or
differ only in a date, a counter or punctuation (exact dedup on normalised text catches those cheaply), and
many more differ by a few edits: a changed header, a sidebar, a comment (MinHash LSH catches those).
FineWeb (Penedo et al. 2024, section 3.4, run with datatrove) deduplicates with MinHash over word 5-grams,
112 hash functions split into 14 bands of 8 rows: two documents become duplicates when all 8 minima of at
least one band agree, which happens with probability 1 - (1 - s^8)^14 for word-5-gram Jaccard similarity s
(about 0.92 at s = 0.8, 0.9996 at s = 0.9, 0.05 at s = 0.5).

kiln's default keeps the 112 hashes but bands them as 16 x 7 and verifies candidates: 1 - (1 - s^7)^16 is
0.977 at s = 0.8 (more near-duplicates found) but 0.118 at s = 0.5 (more false candidates), so a candidate
pair only counts when the fraction of equal minima over all 112 hashes (the MinHash estimate of s, standard
deviation ~0.04 at s = 0.8) is at least `verify` = 0.7. That keeps ~99% of the candidates at s = 0.8 and
rejects nearly all below s = 0.6. Measured by benchmarks/minhash.py on generated near-duplicates (figures in
docs/benchmarks.md): found 0.964 of the pairs at s ~ 0.79 (FineWeb's 14 x 8: 0.915), 0.008 at s ~ 0.6
(0.18) and none at s ~ 0.5 (0.054). `bands=14, rows=8, verify=0` is FineWeb's exact rule.

Normalisation (`normalize_text`, shared by both methods): Unicode NFKC, then per character: a decimal digit
becomes "0", another letter or digit is lower-cased, anything else (punctuation, symbols, whitespace, combining
marks) becomes a word separator; then each run of "0" becomes one "0" (so "page 3 of 10" and "page 4 of 12",
or two prices, compare equal) and whitespace is collapsed. "Don't" gives "don t", "$1,299.99" gives "0 0 0".
Accents are kept (datatrove also strips diacritics; kiln does not, to keep e.g. French words apart).
The words of that string are the MinHash tokens.

Design for shards and workers. The expensive part, signatures, is a pure function of the text and a seed:
- a word's 64-bit hash is a polynomial over its code points modulo 2^64 put through murmur3's finaliser,
  computed for all words of a whole batch of documents at once from one prefix sum (never Python's `hash`,
  which is salted per process, and no Python code per word or per document, whose fixed costs would
  cost more than the hashing itself);
- a 5-gram's 64-bit hash mixes its five word hashes (an order-sensitive sum, wrapping in uint64, and the
  murmur3 finaliser): for dedup as good as hashing the shingle string with xxhash64, and vectorised;
- the 112 permutations are multiply-add-shift hashes h(x) = ((a*x + b) mod 2^64) >> 32 of the shingle
  hash's low 32 bits x, with a and b 64-bit values derived from blake2b(seed, i) (so they do not depend on
  numpy's random generators either); see `MinHasher` for why this family is good enough and fast;
- each band of rows minima becomes one 64-bit band hash (same mixing), the key of that band's bucket.
So every process and machine computes the same signatures, and `LSHIndex`, which only sees band hashes (and,
when verifying, the signatures), can be built per shard and merged (`merge` replays the other index's
documents in their order, which makes a merged index equal to one built over both shards in order). Earliest
by input order wins: a document is a duplicate when one of its band buckets holds an earlier document (that
passes verification), and then it is recorded as a duplicate of the earliest kept document among those (a
chain A ~ B ~ C of near-duplicates collapses onto A, like datatrove's clusters).
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from collections.abc import Sequence

import numpy as np

NUM_PERM = 112
NUM_BANDS = 16  # kiln's default: 16 x 7 = 112 hashes, with verification
ROWS_PER_BAND = 7
VERIFY = 0.7  # a candidate pair counts when >= 70% of the 112 minima agree; 0 = no verification
FINEWEB_BANDS, FINEWEB_ROWS = 14, 8  # FineWeb's setting: bands=14, rows=8, verify=0
NGRAM = 5
DEFAULT_SEED = 1
EMPTY = np.uint32(2**32 - 1)  # the signature of a document with no words
GROUP_CHARS = 1 << 18  # `MinHasher.signatures` hashes texts in groups of about this many characters

_ZERO, _SPACE = ord("0"), ord(" ")
_U64 = np.uint64
_LOW32 = _U64(0xFFFFFFFF)
_MAX64 = _U64(2**64 - 1)
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
_BLOCK = 4096  # shingles per kernel block, at least; at most twice that (see `MinHasher._minima`)


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


def _batch_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The normalised texts as code points, joined by one space: NFKC, then `_map_char` on every character,
    then each run of "0" becomes one "0" (so words are runs of lower-cased letters and digits, and every number
    reads "0"). Returns the codes (uint8 when all is ASCII, else uint32) and where each text starts in them.

    Implemented with a byte translation table for ASCII text and a numpy lookup table over UTF-32 code points
    otherwise, because a Python regex or per-character loop (~25 ns a character) would cost more than all the
    hashing; a whole batch at once, because numpy calls have a fixed cost. NFKC is applied per text (so no
    text composes with its neighbour); the tests check all of it against the per-character definition."""
    parts = [
        t if t.isascii() or unicodedata.is_normalized("NFKC", t) else unicodedata.normalize("NFKC", t) for t in texts
    ]
    starts = np.zeros(len(parts), dtype=np.int64)
    if len(parts) > 1:
        np.cumsum(np.fromiter((len(t) + 1 for t in parts[:-1]), dtype=np.int64, count=len(parts) - 1), out=starts[1:])
    joined = " ".join(parts)
    if joined.isascii():
        mapped = np.frombuffer(joined.encode("ascii").translate(_ASCII_TABLE), dtype=np.uint8)
    else:  # ASCII characters through the byte table too, the rest (usually few) through the BMP table
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        low = codes.astype(np.uint8).tobytes().translate(_ASCII_TABLE)
        mapped = np.frombuffer(low, dtype=np.uint8).astype(np.uint32)
        high = np.flatnonzero(codes >= 0x80)
        mapped[high] = _char_table()[np.minimum(codes[high], 0xFFFF)]
        for pos in high[codes[high] >= 0x10000]:  # astral characters (emoji, historic scripts): rare
            mapped[pos] = ord(_map_char(chr(codes[pos])))
    zero = mapped == _ZERO
    double = zero[1:] & zero[:-1]
    if double.any():
        removed = np.flatnonzero(double) + 1  # the second and later "0" of each run
        starts = starts - np.searchsorted(removed, starts)  # a text's first character is never removed
        keep = np.ones(len(mapped), dtype=bool)
        keep[removed] = False
        mapped = mapped[keep]
    return mapped, starts


def _mapped_codes(text: str) -> np.ndarray:
    """The normalised code points of one text (uint32)."""
    return _batch_codes([text])[0].astype(np.uint32)


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


def _batch_word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the normalised words of all `texts` (uint64, in order) and the text of each word.

    A word's hash is fmix64(sum_j c_j * BASE^j + len * MIX_0) over its code points c_j, modulo 2^64. All
    words of the batch are hashed at once from one prefix sum (a word is a difference of two prefix sums,
    shifted back by BASE^-start), so no Python code runs per word or per text."""
    mapped, starts = _batch_codes(texts)
    is_word = np.zeros(len(mapped) + 2, dtype=bool)
    np.not_equal(mapped, _SPACE, out=is_word[1:-1])
    edges = np.flatnonzero(is_word[1:] != is_word[:-1])  # alternately the start and the end of a word
    if len(edges) == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    begin, end = edges[0::2], edges[1::2]
    power, inverse = _powers(len(mapped))
    prefix = np.empty(len(mapped) + 1, dtype=np.uint64)
    prefix[0] = 0
    np.cumsum(mapped * power, out=prefix[1:])  # wraps modulo 2^64, as intended
    h = (prefix[end] - prefix[begin]) * inverse[begin]
    h += (end - begin).astype(np.uint64) * _U64(_MIX[0])
    return _fmix64(h), np.searchsorted(starts, begin, side="right") - 1


def word_hashes(text: str) -> np.ndarray:
    """64-bit hashes of the normalised words of `text`, in order (uint64)."""
    return _batch_word_hashes([text])[0]


def _combine(columns: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Order-sensitive 64-bit hash of equal-length uint64 columns: fmix64(sum_k col_k * MIX_k + length * MIX_8).

    `length` separates a short document's single shingle of L < n words from an n-gram."""
    acc = np.full(columns[0].shape, _U64((length * _MIX[8]) & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for k, col in enumerate(columns):
        acc += col * _U64(_MIX[k])  # wraps modulo 2^64, as intended
    return _fmix64(acc)


def batch_shingle_hashes(texts: Sequence[str], ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The shingle hashes of every text (see `shingle_hashes`), concatenated in text order, and their counts.

    One vectorised pass over the whole batch: the word n-grams are taken over all words at once and those
    that span two texts are dropped; texts with fewer than `ngram` words get their single shingle apart."""
    if not 1 <= ngram <= 8:
        raise ValueError("ngram must be between 1 and 8")
    w, doc = _batch_word_hashes(texts)
    words_per_text = np.bincount(doc, minlength=len(texts))
    if len(w) >= ngram:
        m = len(w) - ngram + 1
        hashes = _combine([w[k : k + m] for k in range(ngram)], ngram)
        owner = doc[:m]
        inside = owner == doc[ngram - 1 :]  # the n-gram's first and last words belong to the same text
        if not inside.all():
            hashes, owner = hashes[inside], owner[inside]
    else:
        hashes, owner = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    short = np.flatnonzero((words_per_text > 0) & (words_per_text < ngram))
    if len(short):  # a text with 1..ngram-1 words is one shingle of all its words
        first = np.cumsum(words_per_text) - words_per_text
        extra = [
            _combine([w[f + k : f + k + 1] for k in range(c)], c)
            for f, c in zip(first[short].tolist(), words_per_text[short].tolist(), strict=True)
        ]
        owner = np.concatenate([owner, short])
        order = np.argsort(owner, kind="stable")
        hashes, owner = np.concatenate([hashes, *extra])[order], owner[order]
    return hashes, np.bincount(owner, minlength=len(texts))


def shingle_hashes(text: str, ngram: int = NGRAM) -> np.ndarray:
    """64-bit hashes of the word n-grams of the normalised text (uint64, one per position, duplicates kept).

    A text with fewer than `ngram` words (but at least one) is a single shingle of all its words, so short
    documents can still match; a text without words has no shingles."""
    return batch_shingle_hashes([text], ngram)[0]


def permutations(num_perm: int = NUM_PERM, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of the hash functions ((a*x + b) mod 2^64) >> 32: 64-bit values from blake2b(seed, i).

    Derived with blake2b rather than a numpy generator so that they are the same in every process, numpy
    version and platform: a stored index stays valid."""
    a = np.empty(num_perm, dtype=np.uint64)
    b = np.empty(num_perm, dtype=np.uint64)
    for i in range(num_perm):
        d = hashlib.blake2b(f"kiln-minhash-mas:{seed}:{i}".encode(), digest_size=16).digest()
        a[i] = int.from_bytes(d[:8], "little")
        b[i] = int.from_bytes(d[8:], "little")
    return a, b


class MinHasher:
    """Computes MinHash signatures: for each of num_perm hash functions h_i, the minimum of h_i over a
    document's shingles, as uint32.

    The family. h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32 on x = the low 32 bits of the 64-bit shingle hash,
    with a_i, b_i 64-bit (`permutations`): Dietzfelbinger's multiply-add-shift, which for 32-bit keys and
    64-bit arithmetic is strongly universal (pairwise independent: for x != y, (h(x), h(y)) is uniform over
    pairs of 32-bit values; Dietzfelbinger 1996, Thorup 2015 "High speed hashing for integers and strings").
    MinHash asks for more, min-wise independence (every element of a set equally likely to be the minimum),
    which pairwise independence does not give in general: on raw consecutive integers this family favours
    the ends of the run (for runs of 8: chi2 ~2000 against uniform). But the keys here are never structured:
    they are murmur3-finalised 64-bit hashes of the shingles, so already pseudo-random, and the family's job
    is only to give 112 hash functions that behave as independent on them. The tests check that they do: the
    signature agreement estimates the true Jaccard of random sets without bias and with the binomial spread
    of 112 independent hashes (mean absolute error 0.033; the same check fails for 14 functions copied 8
    times), each shingle of a set is the minimum equally often, and LSH detection rates match
    1 - (1 - s^r)^b (so does benchmarks/minhash.py on generated near-duplicates). Truncating keys to 32 bits
    makes two different shingles of a document pair count as one with probability ~n^2 / 2^32 (~1e-4 for
    600-shingle documents): negligible for a similarity threshold. Taking the minimum of the full 64-bit
    a*x + b and shifting after is the same as the minimum of the shifted values (the shift is monotone).

    Why this family: numpy multiplies uint64 with wrap-around in vectorised loops, so one hash of one shingle
    is a multiply, an add and a share of a minimum (~0.6 ns a pair here), where the exact (a*x + b) mod
    2^61 - 1 of datasketch and datatrove, done exactly in numpy (kiln's first version), took ~15 operations
    (3.7 ns a pair). Signatures stay the same in every process and on every machine: no Python `hash`, fixed
    parameters, and uint64 wrap-around is the same everywhere.

    One object holds the parameters and scratch buffers; `signatures` does a whole batch of documents in one
    vectorised pass (numpy calls have a fixed cost, so batching is what makes short documents fast)."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = DEFAULT_SEED, ngram: int = NGRAM) -> None:
        if not 1 <= ngram <= 8:
            raise ValueError("ngram must be between 1 and 8")
        self.num_perm, self.seed, self.ngram = num_perm, seed, ngram
        self.a, self.b = permutations(num_perm, seed)
        self._a = self.a.reshape(num_perm, 1)
        self._bfull = np.repeat(self.b.reshape(num_perm, 1), 2 * _BLOCK, axis=1)  # a plain add beats a broadcast
        self._buf = np.empty(num_perm * 2 * _BLOCK, dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        """The signature of one text (uint32[num_perm])."""
        return self.signatures([text])[0]

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """Signatures of a batch of texts, shape (len(texts), num_perm) uint32; a text without words gets all
        EMPTY. Texts are hashed in groups of about GROUP_CHARS characters, which bounds the memory."""
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        lo, chars = 0, 0
        for i, text in enumerate(texts):
            chars += len(text)
            if chars >= GROUP_CHARS or i == len(texts) - 1:
                out[lo : i + 1] = self._minima(*batch_shingle_hashes(texts[lo : i + 1], self.ngram))
                lo, chars = i + 1, 0
        return out

    def signatures_from_shingles(self, shingles: Sequence[np.ndarray]) -> np.ndarray:
        """Signatures from per-document shingle hashes (uint64 arrays)."""
        counts = np.fromiter((len(s) for s in shingles), dtype=np.int64, count=len(shingles))
        flat = np.concatenate([np.empty(0, dtype=np.uint64), *(np.asarray(s, dtype=np.uint64) for s in shingles)])
        return self._minima(flat, counts)

    def _minima(self, shingles: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Signatures of documents whose shingle hashes are `shingles`, `counts[i]` of them for document i.

        The (num_perm x shingles) matrix of a*x + b is computed block by block, each block reduced per
        document with minimum.reduceat into the running minima. Blocks hold _BLOCK to 2 * _BLOCK shingles (all
        of them when fewer): bounded memory (7 MB), and wide enough for numpy's fast loop (for a broadcast
        multiply, numpy 2 was 3x slower with rows shorter than ~2,700 on the benchmark machine)."""
        k = self.num_perm
        out = np.full((k, len(counts)), _MAX64, dtype=np.uint64)
        x = shingles & _LOW32
        doc_of = np.repeat(np.arange(len(counts)), counts)
        bounds = np.linspace(0, len(x), max(1, len(x) // _BLOCK) + 1).astype(np.int64).tolist() if len(x) else []
        for start, stop in itertools.pairwise(bounds):
            m = stop - start
            vals = self._buf[: k * m].reshape(k, m)
            np.multiply(self._a, x[start:stop], out=vals)  # wraps modulo 2^64, as intended
            vals += self._bfull[:, :m]
            docs = doc_of[start:stop]
            seg = np.flatnonzero(np.concatenate(([True], docs[1:] != docs[:-1])))
            mins = np.minimum.reduceat(vals, seg, axis=1)
            d = docs[seg]
            out[:, d] = np.minimum(out[:, d], mins)
        return (out >> _U64(32)).astype(np.uint32).T.copy()  # no shingles: 2^64 - 1 >> 32 = EMPTY


def band_hashes(signatures: np.ndarray, bands: int = NUM_BANDS, rows: int = ROWS_PER_BAND) -> np.ndarray:
    """One 64-bit key per band: shape (n, bands) from signatures of shape (n, bands * rows) (or one (bands*rows,)).

    The band index is mixed in, so equal minima in different bands never share a key."""
    sig = np.atleast_2d(signatures)
    if sig.shape[1] != bands * rows:
        raise ValueError(f"signatures have {sig.shape[1]} values, expected {bands} bands x {rows} rows")
    if rows > 8:
        raise ValueError("at most 8 rows per band")
    cube = sig.reshape(len(sig), bands, rows).astype(np.uint64)
    band_ids = np.arange(bands, dtype=np.uint64).reshape(1, bands)
    cols = [cube[:, :, r] for r in range(rows)]
    cols.append(np.broadcast_to(band_ids, (len(sig), bands)))
    mixed = np.zeros((len(sig), bands), dtype=np.uint64)
    for k, col in enumerate(cols):
        mixed += col * _U64(_MIX[k])
    return _fmix64(mixed)


def detection_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The probability that two documents of Jaccard similarity s share a band bucket: 1 - (1 - s^rows)^bands."""
    return 1 - (1 - np.asarray(s, dtype=float) ** rows) ** bands


# ---------------------------------------------------------------------------------------------- index


class LSHIndex:
    """Band buckets of the documents added so far, in input order; build per shard and `merge` in order.

    `add` answers whether a document is a near-duplicate of an earlier one and records it either way. A new
    document and an earlier one that share a band bucket are a candidate pair, which counts when `verify` is 0
    (FineWeb) or when at least a `verify` fraction of their signatures' minima agree (then the index keeps
    every document's signature, num_perm x 4 bytes). A duplicate is recorded as a duplicate of the earliest
    kept document among its counted candidates' clusters (so near-copies of a duplicate are caught too).

    A bucket holds the first document with that band hash; without verification that is enough (every later
    document sharing the bucket joins that document's cluster). With verification a candidate can fail, so a
    bucket also lists (up to MAX_BUCKET) later documents of other clusters, which a document that really is a
    near-copy of one of them would otherwise miss in that band. The index also keeps every document's band
    hashes (bands x 8 bytes), which is what lets `merge` replay a shard's documents after this index's ones:
    the result equals one index built over both, in that order. It is plain Python and numpy data, so it
    pickles (to send to or from a worker)."""

    MAX_BUCKET = 8  # documents of different clusters kept per bucket when verifying (bounds the work per add)

    def __init__(self, bands: int = NUM_BANDS, rows: int = ROWS_PER_BAND, verify: float = VERIFY) -> None:
        if not 0 <= verify <= 1:
            raise ValueError("verify must be between 0 (off) and 1")
        self.bands, self.rows, self.verify = bands, rows, float(verify)
        # band hash -> ordinal of the first document with it, or a list of ordinals (when verifying)
        self.buckets: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]
        self.ids: list[str] = []  # ordinal -> document id, every added document
        self.duplicate_of: list[int] = []  # ordinal -> ordinal of the kept document it duplicates, or -1
        self._keys: list[tuple[int, ...]] = []  # ordinal -> its band hashes
        self._sigs = np.empty((0, bands * rows), dtype=np.uint32)  # ordinal -> signature (when verifying)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def settings(self) -> tuple[int, int, float]:
        return self.bands, self.rows, self.verify

    def _check(
        self, keys: Sequence[int] | np.ndarray, signature: np.ndarray | None
    ) -> tuple[tuple[int, ...], np.ndarray | None]:
        keys = tuple(int(k) for k in keys)
        if len(keys) != self.bands:
            raise ValueError(f"expected {self.bands} band hashes, got {len(keys)}")
        if not self.verify:
            return keys, None
        if signature is None or np.shape(signature) != (self.bands * self.rows,):
            raise ValueError(f"a verifying index needs each document's signature of {self.bands * self.rows} values")
        return keys, np.asarray(signature, dtype=np.uint32)

    def _owner(self, ordinal: int) -> int:
        dup = self.duplicate_of[ordinal]
        return ordinal if dup < 0 else dup

    def _match(self, keys: tuple[int, ...], signature: np.ndarray | None) -> int:
        """Ordinal of the earliest kept document whose cluster holds a counted candidate of `keys`, or -1."""
        best = -1
        checked: set[int] = set()
        need = self.verify * self.bands * self.rows
        for bucket, key in zip(self.buckets, keys, strict=True):
            entry = bucket.get(key)
            if entry is None:
                continue
            for hit in (entry,) if isinstance(entry, int) else entry:
                if hit in checked:
                    continue
                checked.add(hit)
                owner = self._owner(hit)
                if best >= 0 and owner >= best:
                    continue
                if signature is not None and np.count_nonzero(self._sigs[hit] == signature) < need:
                    continue
                best = owner
        return best

    def query(self, keys: Sequence[int] | np.ndarray, signature: np.ndarray | None = None) -> str | None:
        """Id of the kept document that `add` would name for these band hashes (and signature), or None;
        records nothing."""
        hit = self._match(*self._check(keys, signature))
        return None if hit < 0 else self.ids[hit]

    def add(self, doc_id: str, keys: Sequence[int] | np.ndarray, signature: np.ndarray | None = None) -> str | None:
        """Record a document; return the id of the kept document it duplicates, or None when it is kept.
        `signature` is needed when the index verifies candidates (verify > 0)."""
        keys, signature = self._check(keys, signature)
        hit = self._match(keys, signature)
        ordinal = len(self.ids)
        owner = ordinal if hit < 0 else hit
        for bucket, key in zip(self.buckets, keys, strict=True):
            entry = bucket.setdefault(key, ordinal)
            if entry == ordinal or not self.verify:
                continue
            members = [entry] if isinstance(entry, int) else entry
            if len(members) < self.MAX_BUCKET and all(self._owner(m) != owner for m in members):
                if isinstance(entry, int):
                    bucket[key] = [entry, ordinal]
                else:
                    entry.append(ordinal)
        self.ids.append(doc_id)
        self.duplicate_of.append(hit)
        self._keys.append(keys)
        if signature is not None:
            if ordinal == len(self._sigs):  # grow by doubling
                grown = np.empty((max(64, 2 * ordinal), self.bands * self.rows), dtype=np.uint32)
                grown[:ordinal] = self._sigs
                self._sigs = grown
            self._sigs[ordinal] = signature
        return None if hit < 0 else self.ids[hit]

    def merge(self, other: LSHIndex) -> dict[str, str]:
        """Append `other`'s documents (a later shard) in their order, as if they had been added here.

        Returns {id: id of the kept document it duplicates} for the documents `other` had kept that are
        duplicates of documents here: the ones a shard's worker passed but the merged view must drop."""
        if other.settings != self.settings:
            raise ValueError("cannot merge indexes with different band or verify settings")
        newly: dict[str, str] = {}
        for ordinal, (doc_id, keys, was) in enumerate(zip(other.ids, other._keys, other.duplicate_of, strict=True)):
            dup = self.add(doc_id, keys, other._sigs[ordinal] if self.verify else None)
            if dup is not None and was < 0:
                newly[doc_id] = dup
        return newly

    def kept_ids(self) -> list[str]:
        """Ids of the documents that were not duplicates, in order."""
        return [i for i, d in zip(self.ids, self.duplicate_of, strict=True) if d < 0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LSHIndex):
            return NotImplemented
        n = len(self.ids)
        return (
            self.settings == other.settings
            and self.ids == other.ids
            and self.duplicate_of == other.duplicate_of
            and self._keys == other._keys
            and self.buckets == other.buckets
            and (not self.verify or np.array_equal(self._sigs[:n], other._sigs[:n]))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable
