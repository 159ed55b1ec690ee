"""MinHash: signatures per second per core (kiln's vectorised numpy implementation against datasketch), and the
near-duplicate recall and false positives of FineWeb's LSH setting (14 bands x 8 rows) and kiln's default
(16 bands x 7 rows, candidates verified at >= 70% agreeing minima) on generated near-duplicates.

    python benchmarks/minhash.py [--docs 2000] [--rounds 5] [--variants 10]

Throughput. Documents: web pages from ../shared/data/text/c4_demo.jsonl joined into 2-5 KB documents (a C4
page alone is ~1-2 KB), cycled to `--docs` documents. Both sides get the same normalised words and the same
word 5-grams:
- kiln: `MinHasher.signatures` on batches of 64 texts (MinHashDedup's batch size): normalisation, 64-bit
  shingle hashes and 112 multiply-add-shift hashes ((a*x + b) mod 2^64) >> 32, all in numpy;
- datasketch: `MinHash(num_perm=112).update_batch(shingles)` on the 5-gram strings (its SHA-1 32-bit shingle
  hash and numpy (a*x + b) mod 2^61-1 permutations), after kiln's normalisation and a Python join per shingle.
One process, one thread; the best of `--rounds` rounds of each is printed (timeit's rule: other work on a
shared machine only slows a round down).

Recall. For each distinct document, `--variants` near-duplicates per target similarity t are made by replacing
randomly chosen words (in a random order of positions) with words from other documents: the fewest
replacements after which the exact word-5-gram Jaccard similarity (on kiln's shingle sets) is <= t, found by
bisection. A variant counts as found when an LSH query (with verification where the setting has it) names its
source document. Reported per setting and target: recall (at t <= 0.7 this is the rate of flagging pairs
below the usual 0.8 threshold, i.e. false positives), the theory 1 - (1 - s^r)^b averaged over the measured
similarities (times P(Binomial(112, s) >= 112 * verify) when verifying, which ignores that a shared band
already raises agreement, so slightly low), and hits on another document. False positives on unrelated
documents: every distinct C4 page and TinyStories story (formulaic, so many shared 5-grams) is added to one
index per setting; each one flagged is listed with its exact Jaccard to the document it was matched to.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasketch import MinHash

from kiln.clean.minhash import (
    FINEWEB_BANDS,
    FINEWEB_ROWS,
    NUM_BANDS,
    ROWS_PER_BAND,
    VERIFY,
    LSHIndex,
    MinHasher,
    band_hashes,
    batch_shingle_hashes,
    detection_probability,
    normalize_text,
    shingle_hashes,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text"
C4 = DATA / "c4_demo.jsonl"
STORIES = DATA / "tinystories_train_head.txt"
SETTINGS = {  # name -> (bands, rows, verify)
    f"FineWeb {FINEWEB_BANDS}x{FINEWEB_ROWS}": (FINEWEB_BANDS, FINEWEB_ROWS, 0.0),
    f"{NUM_BANDS}x{ROWS_PER_BAND} unverified": (NUM_BANDS, ROWS_PER_BAND, 0.0),
    f"kiln {NUM_BANDS}x{ROWS_PER_BAND} verify {VERIFY}": (NUM_BANDS, ROWS_PER_BAND, VERIFY),
}
TARGETS = (0.9, 0.8, 0.7, 0.6, 0.5)


def c4_pages() -> list[str]:
    return [json.loads(line)["text"] for line in C4.open(encoding="utf-8")]


def load_documents(lo: int = 2000, hi: int = 5000) -> list[str]:
    """Consecutive C4 pages joined until at least `lo` characters, cut at a word before `hi`: each page once."""
    docs, cur = [], ""
    for page in c4_pages():
        cur = f"{cur}\n{page}" if cur else page
        if len(cur) >= lo:
            docs.append(cur if len(cur) <= hi else cur[: cur.rfind(" ", 0, hi)])
            cur = ""
    return docs


def stories() -> list[str]:
    """TinyStories: paragraphs are separated by a blank line, stories by a single newline."""
    text = STORIES.read_text(encoding="utf-8")
    return [s.strip() for s in re.split(r"(?<!\n)\n(?!\n)", text) if len(s.split()) >= 20]


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def kiln_signatures(hasher: MinHasher, texts: list[str]) -> np.ndarray:
    return np.concatenate([hasher.signatures(texts[i : i + 64]) for i in range(0, len(texts), 64)])


def datasketch_signatures(texts: list[str]) -> list[MinHash]:
    out = []
    for text in texts:
        words = normalize_text(text).split()
        shingles = [" ".join(words[i : i + 5]).encode("utf-8") for i in range(max(1, len(words) - 4))]
        m = MinHash(num_perm=112)
        m.update_batch(shingles)
        out.append(m)
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    ua, ub = np.unique(a), np.unique(b)
    inter = len(np.intersect1d(ua, ub, assume_unique=True))
    return inter / (len(ua) + len(ub) - inter)


def near_duplicate(text: str, target: float, rng: random.Random, pool: list[str]) -> tuple[str, float]:
    """Replace words at random positions (in a random order, each with a random pool word) until the 5-gram
    Jaccard first drops to `target` or below: the fewest replacements, found by bisection."""
    words = text.split()
    base = shingle_hashes(text)
    order = list(range(len(words)))
    rng.shuffle(order)
    repl = [rng.choice(pool) for _ in order]

    def variant(k: int) -> str:
        w = list(words)
        for pos, new in zip(order[:k], repl[:k], strict=True):
            w[pos] = new
        return " ".join(w)

    lo, hi = 0, len(words)  # J(variant(lo)) > target (or lo = 0), J(variant(hi)) <= target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if jaccard(base, shingle_hashes(variant(mid))) <= target:
            hi = mid
        else:
            lo = mid
    out = variant(hi)
    return out, jaccard(base, shingle_hashes(out))


def agreement_probability(s: np.ndarray, verify: float, num_perm: int = 112) -> np.ndarray:
    """P(Binomial(num_perm, s) >= num_perm * verify), elementwise."""
    need = math.ceil(verify * num_perm - 1e-9)
    ks = np.arange(need, num_perm + 1)
    logc = np.array([math.lgamma(num_perm + 1) - math.lgamma(k + 1) - math.lgamma(num_perm - k + 1) for k in ks])
    s = np.clip(np.asarray(s, dtype=float), 1e-12, 1 - 1e-12)[:, None]
    return np.exp(logc + ks * np.log(s) + (num_perm - ks) * np.log1p(-s)).sum(axis=1)


def build_index(setting: tuple[int, int, float], ids: list[str], sigs: np.ndarray) -> tuple[LSHIndex, list]:
    """An index over the documents in order; returns it and, per document, the id it was matched to or None."""
    bands, rows, verify = setting
    index = LSHIndex(bands, rows, verify)
    keys = band_hashes(sigs, bands, rows).tolist()
    return index, [index.add(i, k, s) for i, k, s in zip(ids, keys, sigs, strict=True)]


def recall_table(distinct: list[str], variants: int, hasher: MinHasher) -> None:
    pool = [w for d in distinct for w in d.split()[:50]]
    ids = [str(i) for i in range(len(distinct))]
    base_sigs = kiln_signatures(hasher, distinct)
    indexes = {name: build_index(s, ids, base_sigs)[0] for name, s in SETTINGS.items()}
    print(f"\nnear-duplicate detection, {len(distinct)} source documents x {variants} variants per target:")
    print(
        f"  {'setting':28s} {'target':>6s} {'mean J':>7s} {'[min, max]':>15s} "
        f"{'found':>6s} {'theory':>6s} {'other':>5s}"
    )
    for target in TARGETS:
        rng = random.Random(int(target * 100))
        made = [(i, *near_duplicate(doc, target, rng, pool)) for i, doc in enumerate(distinct) for _ in range(variants)]
        src = [str(i) for i, _, _ in made]
        sims = np.array([s for _, _, s in made])
        sigs = kiln_signatures(hasher, [t for _, t, _ in made])
        for name, (bands, rows, verify) in SETTINGS.items():
            index = indexes[name]
            keys = band_hashes(sigs, bands, rows).tolist()
            hits = [index.query(k, s) for k, s in zip(keys, sigs, strict=True)]
            found = sum(h == i for h, i in zip(hits, src, strict=True))
            wrong = sum(h is not None and h != i for h, i in zip(hits, src, strict=True))
            theory = detection_probability(sims, bands, rows)
            if verify:
                theory = theory * agreement_probability(sims, verify)
            print(
                f"  {name:28s} {target:6.1f} {sims.mean():7.3f} [{sims.min():.3f}, {sims.max():.3f}] "
                f"{found / len(made):6.3f} {float(np.mean(theory)):6.3f} {wrong:5d}"
            )


def false_positives(hasher: MinHasher) -> None:
    corpora = {"C4 pages": c4_pages(), "TinyStories": stories()}
    for label, texts in corpora.items():
        sh, counts = batch_shingle_hashes(texts)
        per_doc = np.split(sh, np.cumsum(counts)[:-1])
        sigs = hasher.signatures(texts)
        ids = [str(i) for i in range(len(texts))]
        print(f"\nunrelated documents: {len(texts)} {label} ({len(texts) * (len(texts) - 1) // 2} pairs), flagged:")
        for name, setting in SETTINGS.items():
            _, matched = build_index(setting, ids, sigs)
            sims = sorted(jaccard(per_doc[i], per_doc[int(m)]) for i, m in enumerate(matched) if m is not None)
            below = sum(s < 0.5 for s in sims), sum(s < 0.7 for s in sims)
            shown = ", ".join(f"{s:.2f}" for s in sims[:12]) + (" ..." if len(sims) > 12 else "")
            print(f"  {name:28s} {len(sims):3d} (J < 0.5: {below[0]}, J < 0.7: {below[1]})  J = [{shown}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", type=int, default=10, help="near-duplicates per document and target")
    args = parser.parse_args()

    distinct = load_documents()
    texts = [distinct[i % len(distinct)] for i in range(args.docs)]
    sizes = np.array([len(t.encode("utf-8")) for t in texts])
    n_shingles = np.array([len(shingle_hashes(t)) for t in texts])
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    print(
        f"{len(texts)} documents ({len(distinct)} distinct) from {C4.name}: {sizes.mean() / 1000:.1f} KB and "
        f"{n_shingles.mean():.0f} word 5-grams on average (min {sizes.min()} B, max {sizes.max()} B)"
    )

    hasher = MinHasher()
    ours = kiln_signatures(hasher, texts)
    assert np.array_equal(ours[0], hasher.signature(texts[0]))  # batched or alone, the same signature
    near, exact = near_duplicate(distinct[0], 0.6, random.Random(1), distinct[1].split())
    ds_a, ds_b = datasketch_signatures([distinct[0], near])
    kiln_est = float(np.mean(hasher.signature(distinct[0]) == hasher.signature(near)))
    print(
        f"sanity, one near-duplicate pair: exact Jaccard {exact:.3f}, kiln estimate {kiln_est:.3f}, "
        f"datasketch estimate {ds_a.jaccard(ds_b):.3f}"
    )

    t_kiln = best_of(args.rounds, lambda: kiln_signatures(hasher, texts))
    t_shingles = best_of(
        args.rounds, lambda: [batch_shingle_hashes(texts[i : i + 64]) for i in range(0, len(texts), 64)]
    )
    t_ds = best_of(max(1, args.rounds - 2), lambda: datasketch_signatures(texts))
    rate_kiln, rate_ds = len(texts) / t_kiln, len(texts) / t_ds
    per_elem = (t_kiln - t_shingles) / (n_shingles.sum() * 112) * 1e9
    print(f"kiln       {rate_kiln:8.0f} signatures/s  ({t_kiln / len(texts) * 1e6:.0f} us/doc)  aim >= 5,000/s")
    print(
        f"           of which normalise + shingle hashes {t_shingles / t_kiln:.0%}, "
        f"the 112 hashes and minima {per_elem:.2f} ns per (shingle, hash) pair"
    )
    print(f"datasketch {rate_ds:8.0f} signatures/s  ({t_ds / len(texts) * 1e6:.0f} us/doc)")
    print(f"ratio kiln / datasketch: {rate_kiln / rate_ds:.1f}x")

    recall_table(distinct, args.variants, hasher)
    false_positives(hasher)


if __name__ == "__main__":
    main()
