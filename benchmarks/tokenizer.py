"""Tokenizers side by side on >= 30 MB of real text: BPE training time, encoding speed, corpus -> shards.

    python benchmarks/tokenizer.py [--rounds 3] [--vocab 8192 32768] [--skip-train]

The corpus (built once into a temp cache, about 32 MB): the text of the Python 3.11 docs site in
`../shared/data/web/site` (530 pages, tags stripped with the standard library's HTMLParser) plus every text
and JSON(L) string field under `../shared/data` (Tiny Shakespeare, TinyStories, C4, CCNet, GSM8K, Alpaca,
HH-RLHF, eval sets), one JSONL document per page/record.

1. Training at each vocab size, same corpus and GPT-4 split pattern where the library takes one:
   kiln (`kiln.tokenizer.train_bpe`, its rustbpe path plus kiln's reading and checks), rustbpe itself,
   HF tokenizers' BpeTrainer (Split + ByteLevel), sentencepiece BPE (its own whitespace pre-splitting,
   fed lines as it expects, byte fallback, 2 threads).
2. Encoding MB/s with OpenAI's cl100k_base vocabulary: kiln single call per document, kiln's
   `encode_batch_to_numpy` on 2 processes, tiktoken's `encode_ordinary` (single process, the anchor for the
   single call), tiktoken in an equal 2-process pool (the same fork-and-ranges scheme: the anchor for kiln's
   pool), tiktoken's threaded `encode_ordinary_batch`, and HF tokenizers' `encode_batch` on kiln's exported
   tokenizer.json. Every encoder's ids — from the very call that is timed — are checked equal to tiktoken's
   before timing.
3. `kiln tokenize` (corpus file -> train/val shards, end to end, including reading and writing) on 1 and
   2 worker processes.
Rounds alternate between contenders so drifts in machine speed hit all of them; the best round of each is
printed (timeit's rule: interference from other work on a shared machine only ever slows a round down).
"""

from __future__ import annotations

import argparse
import html.parser
import io
import itertools
import json
import multiprocessing
import os
import platform
import re
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(tempfile.gettempdir()) / "kiln-bench-tokenizer"

from kiln.tokenize.tokenize_corpus import TokenizeConfig, tokenize_corpus  # noqa: E402
from kiln.tokenizer import load_pretrained, train_bpe  # noqa: E402
from kiln.tokenizer.hf_export import export_hf  # noqa: E402
from kiln.tokenizer.patterns import GPT4_PATTERN  # noqa: E402


class _Text(html.parser.HTMLParser):
    BLOCK: ClassVar[set[str]] = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "pre", "tr", "dt", "dd", "section"}

    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.skip += tag in ("script", "style")
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def _strings(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def build_corpus() -> Path:
    """The benchmark corpus as one JSONL file (cached)."""
    path = CACHE / "corpus.jsonl"
    if path.exists():
        return path
    if not SHARED.is_dir():
        sys.exit(f"needs {SHARED} (the shared data folder)")
    CACHE.mkdir(parents=True, exist_ok=True)
    docs: list[str] = []
    with tarfile.open(SHARED / "web/site/python-3.11.2-docs-html.tar.xz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(".html"):
                parser = _Text()
                parser.feed(tar.extractfile(member).read().decode("utf-8", "replace"))  # type: ignore[union-attr]
                docs.append(re.sub(r"\n\s*\n+", "\n\n", "".join(parser.out)).strip())
    import gzip

    for file in sorted(SHARED.rglob("*")):
        name = file.name.removesuffix(".gz")
        if not file.is_file() or {"web", "tokenizers", "langid"} & set(file.parts):
            continue
        if not name.endswith((".txt", ".jsonl", ".json", ".md")):
            continue
        raw = (gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()).decode("utf-8")
        if name.endswith(".jsonl"):
            docs += ["\n".join(_strings(json.loads(line))) for line in raw.splitlines() if line.strip()]
        elif name.endswith(".json"):
            docs += ["\n".join(_strings(record)) for record in json.loads(raw)]
        else:
            docs.append(raw)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            if doc:
                f.write(json.dumps({"text": doc}) + "\n")
    tmp.rename(path)
    return path


def best_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ------------------------------------------------------------------------------------------------------ training


def train_kiln(texts: list[str], vocab: int) -> None:
    train_bpe(texts, vocab, "gpt4", ["<|endoftext|>"])


def train_rustbpe(texts: list[str], vocab: int) -> None:
    import rustbpe

    rustbpe.Tokenizer().train_from_iterator(iter(texts), vocab - 1, pattern=GPT4_PATTERN)


def train_hf(texts: list[str], vocab: int) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    from kiln.tokenizer.hf_export import onig_pattern

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(onig_pattern(GPT4_PATTERN)), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)


def train_sentencepiece(texts: list[str], vocab: int) -> None:
    import sentencepiece as spm

    lines = (line for text in texts for line in text.split("\n") if line.strip())
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines,
        model_writer=io.BytesIO(),
        vocab_size=vocab,
        model_type="bpe",
        byte_fallback=True,
        num_threads=2,
        input_sentence_size=0,
        max_sentence_length=1 << 16,
        minloglevel=2,
    )


def bench_training(texts: list[str], vocabs: list[int], rounds: int) -> list[dict]:
    contenders = {
        "kiln": train_kiln,
        "rustbpe": train_rustbpe,
        "HF tokenizers": train_hf,
        "sentencepiece": train_sentencepiece,
    }
    rows = []
    for vocab in vocabs:
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, fn in contenders.items():
                t0 = time.perf_counter()
                fn(texts, vocab)
                times[name].append(time.perf_counter() - t0)
        med = {name: min(ts) for name, ts in times.items()}
        fastest_peer = min((v, k) for k, v in med.items() if k != "kiln")
        rows.append({"vocab": vocab, "seconds": med, "fastest_peer": fastest_peer[1],
                     "kiln_vs_fastest": fastest_peer[0] / med["kiln"]})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------------ encoding


_POOL_ENC = None  # the anchor's Encoding and the texts, inherited by forked workers (as kiln's pool does)
_POOL_TEXTS: list[str] = []


def _tiktoken_range(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    ids = [_POOL_ENC.encode_ordinary(t) for t in _POOL_TEXTS[a:b]]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint32, count=int(lens.sum())), lens


def tiktoken_pool(enc, texts: list[str], workers: int = 2) -> list[np.ndarray]:
    """The anchor on the same footing as kiln's `encode_batch_to_numpy`: `workers` forked processes that inherit
    the vocabulary and texts, each encoding contiguous ranges of documents (about 16 per worker, split by
    characters) with tiktoken's `encode_ordinary` and returning one flat array per range."""
    global _POOL_ENC, _POOL_TEXTS
    _POOL_ENC, _POOL_TEXTS = enc, texts
    cum = np.cumsum([len(t) for t in texts])
    cuts = np.searchsorted(cum, np.linspace(0, cum[-1], workers * 16 + 1)[1:-1])
    bounds = sorted({0, *map(int, cuts), len(texts)})
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = list(pool.map(_tiktoken_range, bounds[:-1], bounds[1:]))
    out: list[np.ndarray] = []
    for flat, lens in parts:
        out += np.split(flat, np.cumsum(lens)[:-1])
    return out


def bench_encoding(texts: list[str], mb: float, rounds: int) -> dict:
    vocab_file = SHARED / "tokenizers/tiktoken/cl100k_base.tiktoken"
    kiln_tok = load_pretrained("cl100k_base", vocab_file)
    enc = kiln_tok._enc  # the tiktoken Encoding kiln built from its own ranks; the anchor is a fresh one below
    import tiktoken
    import tokenizers

    anchor = tiktoken.Encoding(
        "cl100k_anchor", pat_str=enc._pat_str, mergeable_ranks=kiln_tok.ranks, special_tokens=kiln_tok.special_tokens
    )
    hf_path = export_hf(kiln_tok, CACHE / "cl100k_tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(hf_path))

    reference = [anchor.encode_ordinary(t) for t in texts]
    checks = {
        "kiln encode": [kiln_tok.encode(t) for t in texts],
        "kiln encode_batch (2 processes)": kiln_tok.encode_batch(texts, workers=2),
        # the call timed below, checked too
        "kiln encode_batch_to_numpy (2 processes)": [a.tolist() for a in kiln_tok.encode_batch_to_numpy(texts, 2)],
        "tiktoken in a 2-process pool": [a.tolist() for a in tiktoken_pool(anchor, texts, 2)],
        "HF tokenizers encode_batch": [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)],
    }
    for name, ids in checks.items():
        if ids != reference:
            sys.exit(f"{name} disagrees with tiktoken on the corpus")

    contenders: dict[str, Callable[[], object]] = {
        "tiktoken encode_ordinary (1 process)": lambda: [anchor.encode_ordinary(t) for t in texts],
        "tiktoken encode_ordinary_batch (2 threads)": lambda: anchor.encode_ordinary_batch(texts, num_threads=2),
        "tiktoken in a 2-process pool (same scheme)": lambda: tiktoken_pool(anchor, texts, 2),
        "HF tokenizers encode_batch (2 threads)": lambda: hf.encode_batch(texts, add_special_tokens=False),
        "kiln encode (1 process)": lambda: [kiln_tok.encode(t) for t in texts],
        "kiln encode_batch_to_numpy (2 processes)": lambda: kiln_tok.encode_batch_to_numpy(texts, workers=2),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: mb / min(ts) for name, ts in times.items()}


def bench_shards(corpus: Path, mb: float, rounds: int) -> dict:
    vocab_file = SHARED / "tokenizers/tiktoken/cl100k_base.tiktoken"
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            cfg = TokenizeConfig(
                inputs=[str(corpus)], out_dir=f"{tmp}/w{workers}", tokenizer=str(vocab_file),
                workers=workers, overwrite=True,
            )  # fmt: skip
            seconds = best_time(lambda cfg=cfg: tokenize_corpus(cfg, progress=False), rounds)
            out[f"kiln tokenize, {workers} process{'es' if workers > 1 else ''}"] = mb / seconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vocab", type=int, nargs="+", default=[8192, 32768])
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()

    corpus = build_corpus()
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"corpus: {len(texts):,} documents, {mb:.1f} MB of UTF-8 text ({corpus})")
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}")

    if not args.skip_train:
        print("\n## BPE training (seconds, best of", args.rounds, "rounds)")
        for row in bench_training(texts, args.vocab, args.rounds):
            cells = "  ".join(f"{k} {v:.2f}" for k, v in row["seconds"].items())
            print(f"vocab {row['vocab']:>6}: {cells}  -> kiln is {row['kiln_vs_fastest']:.2f}x the fastest peer "
                  f"({row['fastest_peer']}; >1 = kiln faster)")  # fmt: skip

    print("\n## Encoding, cl100k_base (MB/s, best of", args.rounds, "rounds)")
    rates = bench_encoding(texts, mb, args.rounds)
    anchor = rates["tiktoken encode_ordinary (1 process)"]
    for name, rate in rates.items():
        print(f"{name:<45} {rate:7.1f} MB/s  {rate / anchor:5.2f}x")

    print("\n## Corpus -> shards, cl100k_base, end to end (MB of text/s, best of", args.rounds, "rounds)")
    for name, rate in bench_shards(corpus, mb, args.rounds).items():
        print(f"{name:<45} {rate:7.1f} MB/s  {rate / anchor:5.2f}x single-process tiktoken")


if __name__ == "__main__":
    main()
