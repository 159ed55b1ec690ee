"""MinHash signatures per second, kiln's vectorised numpy implementation against datasketch, and the
near-duplicate recall of FineWeb's LSH setting (14 bands x 8 rows) on generated near-duplicates.

    python benchmarks/minhash.py [--docs 2000] [--rounds 3] [--variants 10]

Documents: web pages from ../shared/data/text/c4_demo.jsonl joined into 2-5 KB documents (a C4 page alone is
~1-2 KB), cycled to `--docs` documents. Both sides get the same normalised words and the same word 5-grams:
- kiln: `MinHasher.signatures` on batches of 64 texts: normalisation, 64-bit shingle hashes and 112 exact
  (a*x + b) mod 2^61-1 permutations, all in numpy;
- datasketch: `MinHash(num_perm=112).update_batch(shingles)` on the 5-gram strings (its SHA-1 32-bit shingle
  hash and numpy permutations), after kiln's normalisation and a Python join per shingle.
One process, one thread; the best of `--rounds` rounds of each is printed (timeit's rule: other work on a
shared machine only slows a round down).

Recall: for distinct documents, near-duplicates are made by replacing randomly chosen words with words from
other documents, one at a time, until the exact word-5-gram Jaccard similarity (computed on kiln's shingle
sets) first falls to the target or below; the fraction whose LSH query finds the source is reported with the
theoretical 1 - (1 - s^r)^b averaged over the measured similarities, and the band settings that would reach
0.95 at s = 0.8.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasketch import MinHash

from kiln.data.dedup import LSHIndex, MinHasher, band_hashes, normalize_text, shingle_hashes

C4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "c4_demo.jsonl"


def load_documents(lo: int = 2000, hi: int = 5000) -> list[str]:
    """Consecutive C4 pages joined until at least `lo` characters, cut at a word before `hi`: each page once."""
    pages = [json.loads(line)["text"] for line in C4.open(encoding="utf-8")]
    docs, cur = [], ""
    for page in pages:
        cur = f"{cur}\n{page}" if cur else page
        if len(cur) >= lo:
            docs.append(cur if len(cur) <= hi else cur[: cur.rfind(" ", 0, hi)])
            cur = ""
    return docs


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
    """Replace random words (never the same position twice) until the 5-gram Jaccard first drops to `target`."""
    words = text.split()
    base = shingle_hashes(text)
    positions = list(range(len(words)))
    rng.shuffle(positions)
    sim = 1.0
    for pos in positions:
        words[pos] = rng.choice(pool)
        sim = jaccard(base, shingle_hashes(" ".join(words)))
        if sim <= target:
            break
    return " ".join(words), sim


def detection_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    return 1 - (1 - np.asarray(s) ** rows) ** bands


def recall(docs: list[str], target: float, variants: int, hasher: MinHasher, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    pool = [w for d in docs for w in d.split()[:50]]
    index = LSHIndex()
    for i, keys in enumerate(band_hashes(kiln_signatures(hasher, docs)).tolist()):
        index.add(str(i), keys)
    sims, found, wrong = [], 0, 0
    for i, doc in enumerate(docs):
        dups = [near_duplicate(doc, target, rng, pool) for _ in range(variants)]
        sims += [s for _, s in dups]
        for keys in band_hashes(kiln_signatures(hasher, [t for t, _ in dups])).tolist():
            hit = index.query(keys)
            found += hit == str(i)
            wrong += hit is not None and hit != str(i)
    s = np.array(sims)
    return {
        "pairs": len(s),
        "jaccard_mean": float(s.mean()),
        "jaccard_min": float(s.min()),
        "jaccard_max": float(s.max()),
        "recall": found / len(s),
        "theory": float(np.mean(detection_probability(s, 14, 8))),
        "other_doc_hits": wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", type=int, default=10, help="near-duplicates per document at s = 0.8")
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
    t_shingles = best_of(args.rounds, lambda: [shingle_hashes(t) for t in texts])
    t_ds = best_of(max(1, args.rounds - 1), lambda: datasketch_signatures(texts))
    rate_kiln, rate_ds = len(texts) / t_kiln, len(texts) / t_ds
    per_elem = (t_kiln - t_shingles) / (n_shingles.sum() * 112) * 1e9
    print(f"kiln       {rate_kiln:8.0f} signatures/s  ({t_kiln / len(texts) * 1e6:.0f} us/doc)")
    print(
        f"           of which normalise + shingle hashes {t_shingles / t_kiln:.0%}, "
        f"permutations {per_elem:.2f} ns per (shingle, hash) pair"
    )
    print(f"datasketch {rate_ds:8.0f} signatures/s  ({t_ds / len(texts) * 1e6:.0f} us/doc)")
    print(f"ratio kiln / datasketch: {rate_kiln / rate_ds:.1f}x")

    print("\nnear-duplicate recall of 14 bands x 8 rows (query finds the source document):")
    for target, variants in (
        (0.9, max(1, args.variants // 2)),
        (0.8, args.variants),
        (0.7, max(1, args.variants // 2)),
    ):
        r = recall(distinct, target, variants, hasher, seed=int(target * 100))
        print(
            f"  target s<={target}: {r['pairs']} pairs, measured Jaccard {r['jaccard_mean']:.3f} "
            f"[{r['jaccard_min']:.3f}, {r['jaccard_max']:.3f}]  recall {r['recall']:.3f}  "
            f"theory {r['theory']:.3f}  hits on another document {r['other_doc_hits']}"
        )
    print("\ndetection probability 1-(1-s^r)^b by band setting:")
    print("  bands x rows (hashes)   s=0.5    s=0.7    s=0.8    s=0.9")
    for b, r in ((14, 8), (16, 7), (20, 8), (28, 4)):
        probs = "  ".join(f"{detection_probability(s, b, r):.3f}" for s in (0.5, 0.7, 0.8, 0.9))
        print(f"  {b:3d} x {r:2d} ({b * r:3d})          {probs}")


if __name__ == "__main__":
    main()
