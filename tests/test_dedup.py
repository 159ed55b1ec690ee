"""Exact and MinHash LSH deduplication: bit-for-bit against a slow pure-Python reference, stable across
processes, near-duplicates dropped and unrelated documents kept, shard indexes merged like one index."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from kiln.data import dedup
from kiln.data.dedup import (
    MERSENNE_PRIME,
    ExactDedup,
    LSHIndex,
    MinHashDedup,
    MinHasher,
    band_hashes,
    exact_key,
    normalize_text,
    shingle_hashes,
)
from kiln.data.pipeline import Document, run_steps

M64 = (1 << 64) - 1

# ------------------------------------------------------------------ slow pure-Python reference (the spec)


def ref_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    chars = []
    for c in text:
        if c.isdecimal():
            chars.append("0")
        elif c.isalnum():
            low = c.lower()
            chars.append(low if len(low) == 1 else c)
        else:
            chars.append(" ")
    return re.sub("0+", "0", "".join(chars)).split()


def ref_fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    h ^= h >> 33
    return h


def ref_word_hash(word: str) -> int:
    h = sum(ord(c) * pow(dedup._BASE, j, 1 << 64) for j, c in enumerate(word)) & M64
    return ref_fmix64((h + len(word) * dedup._MIX[0]) & M64)


def ref_combine(values: list[int], length: int) -> int:
    acc = length * dedup._MIX[8]
    for k, v in enumerate(values):
        acc += v * dedup._MIX[k]
    return ref_fmix64(acc & M64)


def ref_shingles(text: str, n: int = 5) -> list[int]:
    w = [ref_word_hash(x) for x in ref_words(text)]
    if not w:
        return []
    n = min(n, len(w))
    return [ref_combine(w[i : i + n], n) for i in range(len(w) - n + 1)]


def ref_params(num_perm: int, seed: int) -> list[tuple[int, int]]:
    out = []
    for i in range(num_perm):
        d = hashlib.blake2b(f"kiln-minhash:{seed}:{i}".encode(), digest_size=16).digest()
        out.append(
            (
                1 + int.from_bytes(d[:8], "little") % (MERSENNE_PRIME - 1),
                int.from_bytes(d[8:], "little") % MERSENNE_PRIME,
            )
        )
    return out


def ref_signature(text: str, num_perm: int = 112, seed: int = 1) -> list[int]:
    shingles = ref_shingles(text)
    if not shingles:
        return [M64] * num_perm
    return [min((a * x + b) % MERSENNE_PRIME for x in shingles) for a, b in ref_params(num_perm, seed)]


def jaccard(a: str, b: str) -> float:
    sa, sb = set(ref_shingles(a)), set(ref_shingles(b))
    return len(sa & sb) / len(sa | sb)


# ------------------------------------------------------------------ test documents

_letters = random.Random(99)
# letters only: digits normalise to "0", so "w1" and "w2" would be the same word
VOCAB = sorted({"".join(_letters.choices("abcdefghijklmnopqrstuvwxyz", k=_letters.randint(3, 9))) for _ in range(3000)})
VOCAB += ["the", "a", "of", "and", "to", "in", "is", "café", "naïve", "Zoë"]


def random_doc(rng: random.Random, n_words: int = 300) -> str:
    words = [rng.choice(VOCAB) for _ in range(n_words)]
    for i in range(12, n_words, 13):
        words[i] += rng.choice([".", ",", "!"])
    return " ".join(words)


def edit(text: str, rng: random.Random, n_edits: int) -> str:
    """Replace `n_edits` words at random positions by new words."""
    words = text.split()
    for i in rng.sample(range(len(words)), n_edits):
        words[i] = "edit" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=8))
    return " ".join(words)


MIXED_TEXTS = [
    "",
    "   \n\t ",
    "Hello",
    "Hello, World!",
    "one two three four",
    "one two three four five",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps again!",
    "Prices: $1,299.99 on 2023-10-05, 3rd of May; 00042 and x007y.",
    "Ünïcödé ÇAFÉ naïve ﬁne ＦＵＬＬ ｗｉｄｔｈ ١٢٣ ٤ İstanbul ß Straße",
    "emoji 😀 in 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 text, e\u0301 combining, 中文字符 和 日本語のテキスト",
    "under_score snake_case_name tab\there\u00a0nbsp\u2009thin",
    "\ud800 lone surrogate survives?",
]


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("text", MIXED_TEXTS)
def test_normalisation_matches_the_per_character_definition(text):
    assert normalize_text(text).split() == ref_words(text)


def test_normalisation_on_random_unicode_matches_reference():
    rng = random.Random(7)
    pool = "aZ09 _-.,!?'’“”\n\t\u00a0éÉßİıﬁ０٣²½Ⅻ\u0301\u200b中😀𝔘ǅ"
    for _ in range(300):
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 40)))
        assert normalize_text(text).split() == ref_words(text), repr(text)


def test_normalisation_rules():
    assert normalize_text("  Hello,\n\nWORLD!!  It's   2023 ") == "hello world it s 0"
    assert normalize_text("Call 555-1234 now") == normalize_text("call 867-5309 NOW.")
    assert normalize_text("café") != normalize_text("cafe")  # accents are kept


# ------------------------------------------------------------------ signatures


@pytest.mark.parametrize("text", MIXED_TEXTS)
def test_shingle_hashes_equal_reference(text):
    assert shingle_hashes(text).tolist() == ref_shingles(text)


def test_signatures_equal_reference_bit_for_bit():
    rng = random.Random(0)
    texts = [*MIXED_TEXTS, *(random_doc(rng, rng.randrange(1, 400)) for _ in range(6))]
    hasher = MinHasher()
    sigs = hasher.signatures(texts)  # one batch: documents share kernel blocks
    assert sigs.shape == (len(texts), 112) and sigs.dtype == np.uint64
    for text, sig in zip(texts, sigs, strict=True):
        assert sig.tolist() == ref_signature(text)
    # one at a time gives the same, and another seed differs
    assert hasher.signature(texts[7]).tolist() == sigs[7].tolist()
    assert MinHasher(seed=2).signature(texts[7]).tolist() == ref_signature(texts[7], seed=2) != sigs[7].tolist()


def test_kernel_exact_at_the_edges_of_the_field():
    """Shingle hashes at and around p and 2^64, and ones chosen so that (a*x + b) mod p is 0..7 (the values
    that the single Mersenne fold leaves as v + p), across more than one kernel block."""
    hasher = MinHasher(num_perm=16)
    p = MERSENNE_PRIME
    xs = [0, 1, p - 1, p, p + 1, 2 * p, M64, M64 - 1, (1 << 61), (1 << 31) - 1, 1 << 31]
    for i, (a, b) in enumerate(zip(hasher.a.tolist(), hasher.b.tolist(), strict=True)):
        v = i % 8
        xs.append(((v - b) * pow(a, -1, p)) % p)  # h_i(x) = v
        xs.append(((v - b) * pow(a, -1, p)) % p + p)  # same value, x >= p
    rng = np.random.default_rng(0)
    big = rng.integers(0, 2**63, 5000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    docs = [np.array(xs, dtype=np.uint64), big, np.array(xs[::-1], dtype=np.uint64)]
    got = hasher.signatures_from_shingles(docs)
    for doc, sig in zip(docs, got, strict=True):
        want = [
            min((a * int(x) + b) % p for x in doc.tolist())
            for a, b in zip(hasher.a.tolist(), hasher.b.tolist(), strict=True)
        ]
        assert sig.tolist() == want
    assert got[0].tolist() == list(range(8)) * 2  # the crafted minima really were hit


def test_signatures_are_stable_across_processes():
    """A fresh interpreter (different hash randomisation) computes identical signatures and band hashes."""
    texts = [MIXED_TEXTS[6], MIXED_TEXTS[8], random_doc(random.Random(3))]
    code = (
        "import json, sys\n"
        "from kiln.data.dedup import MinHasher, band_hashes\n"
        "texts = json.load(sys.stdin)\n"
        "sigs = MinHasher().signatures(texts)\n"
        "print(json.dumps([sigs.tolist(), band_hashes(sigs).tolist()]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True, env=env, check=True
    )
    sigs_there, bands_there = json.loads(out.stdout)
    sigs_here = MinHasher().signatures(texts)
    assert sigs_there == sigs_here.tolist()
    assert bands_there == band_hashes(sigs_here).tolist()


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(11)
    base = random_doc(rng, 400)
    hasher = MinHasher()
    for n_edits in (5, 20, 40):
        other = edit(base, rng, n_edits)
        j = jaccard(base, other)
        sa, sb = hasher.signatures([base, other])
        estimate = float(np.mean(sa == sb))
        assert abs(estimate - j) < 0.15, (n_edits, j, estimate)


def test_band_hashes_shape_and_sensitivity():
    sig = MinHasher().signature("some words to hash into a signature here")
    keys = band_hashes(sig)
    assert keys.shape == (1, 14)
    changed = sig.copy()
    changed[17] ^= np.uint64(1)  # band 2 (rows 16..23)
    diff = band_hashes(changed) != keys
    assert diff.tolist() == [[i == 2 for i in range(14)]]
    with pytest.raises(ValueError):
        band_hashes(sig[:100])


# ------------------------------------------------------------------ exact dedup


def test_exact_dedup_drops_exact_and_normalised_duplicates_keeps_near_ones():
    docs = [
        Document("a", "The cat sat on the mat. It was 3 pm."),
        Document("b", "The cat sat on the mat. It was 3 pm."),  # exact
        Document("c", "the CAT sat, on the mat!!  it was 4 PM"),  # normalised: case, punctuation, digits
        Document("d", "The cat sat on the rug. It was 3 pm."),  # one word differs: not an exact duplicate
        Document("e", "The cat sat on the mat. It was three pm."),
    ]
    step = ExactDedup()
    kept = list(run_steps(docs, [step]))
    assert [d.id for d in kept] == ["a", "d", "e"]
    assert docs[1].metadata["duplicate_of"] == "a" and docs[2].metadata["duplicate_of"] == "a"
    assert "duplicate_of" not in docs[3].metadata
    assert step.stats.dropped == {"exact_duplicate": 2} and step.stats.kept == 3
    assert exact_key("A  b") == exact_key("a b") != exact_key("a c")


def test_exact_dedup_across_shards_shares_seen():
    seen: dict[bytes, str] = {}
    list(ExactDedup(seen)([Document("s1-0", "Hello there, world")]))
    kept = list(ExactDedup(seen)([Document("s2-0", "hello there world"), Document("s2-1", "other")]))
    assert [d.id for d in kept] == ["s2-1"]


# ------------------------------------------------------------------ MinHash dedup


def near_dup_corpus(seed: int = 5) -> tuple[list[Document], dict[str, str]]:
    """40 unrelated documents, and for 15 of them a near-duplicate (Jaccard >= 0.9) placed later."""
    rng = random.Random(seed)
    originals = [Document(f"doc{i}", random_doc(rng)) for i in range(40)]
    docs = list(originals)
    expected: dict[str, str] = {}
    for i in range(15):
        src = originals[i * 2]
        dup = Document(f"near{i}", edit(src.text, rng, rng.choice([1, 2, 3])))
        assert jaccard(src.text, dup.text) >= 0.9
        docs.insert(rng.randrange(docs.index(src) + 1, len(docs) + 1), dup)
        expected[dup.id] = src.id
    return docs, expected


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_minhash_dedup_drops_near_duplicates_keeps_unrelated(batch_size):
    docs, expected = near_dup_corpus()
    step = MinHashDedup(batch_size=batch_size)
    kept = [d.id for d in run_steps(docs, [step])]
    assert kept == [d.id for d in docs if d.id not in expected]  # order kept, all originals kept
    for dup_id, src_id in expected.items():
        doc = next(d for d in docs if d.id == dup_id)
        assert doc.metadata["duplicate_of"] == src_id
        assert doc.metadata["dropped_by"] == "minhash_dedup:minhash_duplicate"
    assert step.stats.dropped == {"minhash_duplicate": 15} and step.stats.seen == 55


def test_earliest_wins_and_chains_point_to_the_kept_document():
    rng = random.Random(2)
    a = random_doc(rng)
    b = edit(a, rng, 3)
    c = edit(b, rng, 3)  # near b (and a)
    docs = [Document("c", c), Document("a", a), Document("b", b), Document("x", random_doc(rng))]
    kept = [d.id for d in MinHashDedup()(docs)]
    assert kept == ["c", "x"]
    assert docs[1].metadata["duplicate_of"] == "c" and docs[2].metadata["duplicate_of"] == "c"


def test_documents_without_words_are_kept_and_not_indexed():
    step = MinHashDedup()
    kept = [d.id for d in step([Document("e1", ""), Document("e2", "!!! ..."), Document("e3", "")])]
    assert kept == ["e1", "e2", "e3"] and len(step.index) == 0


def test_short_documents_are_one_shingle_and_still_match():
    kept = [d.id for d in MinHashDedup()([Document("1", "Hello world!"), Document("2", "hello, WORLD")])]
    assert kept == ["1"]


# ------------------------------------------------------------------ index merge


def index_of(docs: list[Document]) -> LSHIndex:
    hasher = MinHasher()
    index = LSHIndex()
    keys = band_hashes(hasher.signatures([d.text for d in docs]))
    for doc, k in zip(docs, keys, strict=True):
        index.add(doc.id, k)
    return index


def test_merge_of_shards_equals_one_index_over_both():
    docs, expected = near_dup_corpus(seed=9)
    half = len(docs) // 2
    shard_a, shard_b = docs[:half], docs[half:]
    step_a, step_b = MinHashDedup(), MinHashDedup()  # two workers, each with its own index
    kept_a = [d.id for d in step_a(shard_a)]
    kept_b = [d.id for d in step_b(shard_b)]
    merged = step_a.index
    newly = merged.merge(step_b.index)
    whole = index_of(docs)
    assert merged == whole
    assert merged.kept_ids() == whole.kept_ids() == [d.id for d in docs if d.id not in expected]
    # the second pass: what shard b's worker kept but the merged view drops
    cross = {k: v for k, v in expected.items() if k in kept_b}
    assert cross and newly == cross
    assert set(kept_a) | set(kept_b) - set(newly) == set(whole.kept_ids())


def test_merge_is_incremental_and_query_does_not_record():
    rng = random.Random(4)
    texts = [random_doc(rng) for _ in range(6)]
    texts.append(edit(texts[0], rng, 2))
    docs = [Document(str(i), t) for i, t in enumerate(texts)]
    chained = index_of(docs[:2])
    for lo, hi in ((2, 4), (4, 7)):
        chained.merge(index_of(docs[lo:hi]))
    assert chained == index_of(docs)
    keys = band_hashes(MinHasher().signature(edit(texts[3], rng, 1)))[0]
    assert chained.query(keys) == "3" and len(chained) == 7
    with pytest.raises(ValueError):
        chained.merge(LSHIndex(bands=7, rows=16))
