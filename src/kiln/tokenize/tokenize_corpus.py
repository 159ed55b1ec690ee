"""`kiln tokenize`: a corpus -> train and val token shards (the format `kiln train` reads), in parallel, resumable.

The corpus is cut into parts (`corpus.plan_parts`); each worker process encodes whole parts and writes that
part's shards itself (`train_<part>.bin`, `val_<part>.bin`) and then a small done-marker
(`parts/<part>.json` with its counts), all atomically. A rerun of the same command reads `plan.json`, skips
every part whose marker exists and does the rest, so a killed job loses at most the parts in flight and
never redoes or double-counts finished ones. A different corpus, tokenizer or setting in the same directory
is refused unless `overwrite` is set. `run(TokenizeConfig)` is the stage (`kiln tokenize`); it also leaves the
resolved config, `kiln-tokenize.toml`, in the output directory (not a corpus or shard name: neither a rerun's
input search nor `kiln train`'s shard reader picks it up).

Documents are separated by <|endoftext|>. The val split is chosen per *segment* (a document, or a ~64 KB piece
of a longer one) by a systematic sampler whose phase comes from a hash of the part's content and bounds, so it is
deterministic (the same wherever the corpus lies), spread evenly through the corpus, and gets its share even from
one long text file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np

from kiln.stage import write_resolved_config
from kiln.tokenize.corpus import Part, ReadStats, cut_segments, find_inputs, plan_parts, read_part
from kiln.tokenize.shards import ShardError, read_header, write_shard
from kiln.tokenize.tokenize_config import TokenizeConfig
from kiln.tokenize.tokenize_summary import SUMMARY_FILE, TokenizeSummary
from kiln.tokenizer.base import Tokenizer
from kiln.tokenizer.bpe import ENDOFTEXT, BPETokenizer, _fork_context
from kiln.tokenizer.registry import get_tokenizer
from kiln.utils.io import atomic_write_text, sha256_file
from kiln.utils.lifeline import die_with_parent, exit_if_orphaned
from kiln.utils.progress import progress_bar

__all__ = ["TokenizeConfig", "TokenizeSummary", "run", "tokenize_corpus"]

PLAN_FILE = "plan.json"
PARTS_DIR = "parts"
TOKENIZER_DIR = "tokenizer"
# What each part's marker counts; summary.json holds their sums.
PART_COUNTS = (
    "input_bytes",
    "documents",
    "segments",
    "text_bytes",
    "train_tokens",
    "val_tokens",
    "separators",
    "replaced_bytes",
    "skipped_records",
)


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    """A hash of the tokenizer's saved files: a rerun with a different vocabulary cannot mix shards."""
    if isinstance(tok, BPETokenizer):
        return tok.fingerprint()  # same idea, without writing 100k-line files to a temp dir
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(tmp)
        digest = hashlib.sha256()
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + sha256_file(path).encode())
        return digest.hexdigest()


def _plan(cfg: TokenizeConfig, tok: Tokenizer) -> tuple[dict, list[Part]]:
    files = find_inputs(cfg.inputs)
    # Parts of at most part_mb, but ~64 of them (not below 1 MB) on a smaller corpus, so that every core has work
    # and the last part to finish is short. The plan depends on the corpus only, never on the number of workers.
    total = sum(p.stat().st_size for p in files)
    part_bytes = int(min(cfg.part_mb * (1 << 20), max(1 << 20, total / 64)))
    parts = plan_parts(files, part_bytes, cfg.separator)
    # A corpus of a few long texts (Tiny Shakespeare is one) gets smaller segments, so that its val split
    # still holds about 8 of them instead of possibly none.
    total = sum(p.size for p in parts)
    cfg.segment_kb = max(1, min(cfg.segment_kb, int(total * cfg.val_fraction / 8 / 1024)))
    inputs = [{"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in files]
    # What the shards depend on; how the run is done (where, how many workers, overwrite, quiet) is not.
    ignored = ("inputs", "out_dir", "tokenizer", "workers", "overwrite", "quiet")
    settings = {k: v for k, v in asdict(cfg).items() if k not in ignored}
    plan = {
        "version": 1,
        "inputs": inputs,
        "tokenizer": tokenizer_fingerprint(tok),
        "settings": settings,
        "parts": [p.to_json() for p in parts],
    }
    return plan, parts


def _prepare_out_dir(out: Path, plan: dict, overwrite: bool) -> None:
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        try:
            old = json.loads(plan_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = None
        if old == plan and not overwrite:
            _remove_temp_files(out)  # a killed worker's half-written shard or marker, never under a real name
            return  # same job: resume
        if not overwrite:
            raise ValueError(
                f"{out} already holds shards of a different corpus, tokenizer or settings; "
                "use another --out or pass --overwrite to replace them"
            )
    elif any(out.glob("*.bin")) and not overwrite:
        raise ValueError(f"{out} already holds .bin files not written by kiln tokenize; pass --overwrite to replace")
    if overwrite:
        for path in [*out.glob("train*.bin"), *out.glob("val*.bin"), out / SUMMARY_FILE, plan_path]:
            path.unlink(missing_ok=True)
        shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
        shutil.rmtree(out / TOKENIZER_DIR, ignore_errors=True)


def _remove_temp_files(out: Path) -> None:
    """The temp files `atomic_write` leaves when its process is killed mid-write (`.<name>.<random>.tmp`)."""
    for pattern in (".train_*.bin.*.tmp", ".val_*.bin.*.tmp"):
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)
    for path in (out / PARTS_DIR).glob(".*.json.*.tmp"):
        path.unlink(missing_ok=True)


def _marker(out: Path, index: int) -> Path:
    return out / PARTS_DIR / f"{index:06d}.json"


def _done(out: Path, index: int) -> dict | None:
    """The part's counts if it is finished: its marker is readable and its shards are there, whole."""
    try:
        result = json.loads(_marker(out, index).read_text(encoding="utf-8"))
        for split in ("train", "val"):
            if (
                result[f"{split}_tokens"]
                and read_header(out / f"{split}_{index:06d}.bin").count != result[f"{split}_tokens"]
            ):
                return None
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ShardError):
        return None  # redo the part: a lost or damaged shard must not be counted as written
    return result


def _phase(part: Part) -> float:
    """The sampler's starting point in [0, 1), fixed by the part's content, not where the file lies.

    The file's first 64 KiB, its size and the slice's bounds: the same corpus copied to another directory (a
    test's temp dir, another machine) splits into the same val segments, where hashing the path did not.
    """
    with open(part.path, "rb") as f:
        head = f.read(64 << 10)
    key = head + f":{os.path.getsize(part.path)}:{part.start}:{part.end}".encode()
    h = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def process_part(part: Part, tok: Tokenizer, cfg: TokenizeConfig, out: Path) -> dict:
    """Encode one part into its train/val shards and write its done-marker; returns its counts."""
    t0 = time.perf_counter()
    stats = ReadStats()
    eot = tok.special_tokens.get(ENDOFTEXT)
    eot_arr = np.array([eot if eot is not None else 0], dtype=np.uint32)
    encode: Callable[[str], np.ndarray]
    if isinstance(tok, BPETokenizer):
        encode = tok.encode_to_numpy
    else:

        def encode(text: str) -> np.ndarray:
            return np.asarray(tok.encode(text), dtype=np.uint32)

    streams: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    open_piece: dict[str, tuple[int, int] | None] = {"train": None, "val": None}
    n_eot = {"train": 0, "val": 0}
    text_bytes = segments = 0
    acc = _phase(part)

    def close(split: str) -> None:
        open_piece[split] = None
        if eot is not None:
            streams[split].append(eot_arr)
            n_eot[split] += 1

    segment_chars = cfg.segment_kb * 1024
    for doc, (text, complete) in enumerate(read_part(part, stats, cfg.text_field, cfg.separator)):
        pieces = cut_segments(text, segment_chars)
        for j, piece in enumerate(pieces):
            acc += cfg.val_fraction
            split = "val" if acc >= 1.0 else "train"
            acc -= split == "val"
            if open_piece[split] is not None and open_piece[split] != (doc, j - 1):
                close(split)  # that split's previous piece was cut off from its continuation
            streams[split].append(encode(piece))
            text_bytes += len(piece.encode("utf-8"))
            segments += 1
            if complete and j == len(pieces) - 1:
                close(split)
            else:
                open_piece[split] = (doc, j)
    for split in ("train", "val"):
        if open_piece[split] is not None:
            close(split)

    counts = {}
    for split, arrays in streams.items():
        tokens = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.uint32)
        counts[split] = int(tokens.size)
        if tokens.size:
            write_shard(out / f"{split}_{part.index:06d}.bin", tokens, vocab_size=tok.vocab_size)
    result = {
        "part": part.index,
        "input_bytes": part.size,
        "documents": stats.documents,
        "segments": segments,
        "text_bytes": text_bytes,
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
        "separators": n_eot["train"] + n_eot["val"],
        "replaced_bytes": stats.replaced_bytes,
        "skipped_records": stats.skipped_records,
        "problems": stats.problems,
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(_marker(out, part.index), json.dumps(result))
    return result


_WORKER: tuple[Tokenizer, TokenizeConfig, Path] | None = None
_PARENT = 0


def _init_worker(tok: Tokenizer, cfg: TokenizeConfig, out: Path, parent: int) -> None:
    global _WORKER, _PARENT
    # A killed `kiln tokenize` leaves no worker writing parts (see kiln.utils.lifeline); between parts the worker
    # checks for itself, so no watcher thread.
    die_with_parent(parent, watch=False)
    _WORKER, _PARENT = (tok, cfg, out), parent


def _work(part: Part) -> dict:
    assert _WORKER is not None
    exit_if_orphaned(_PARENT)
    return process_part(part, *_WORKER)


def tokenize_corpus(cfg: TokenizeConfig, progress: bool = True) -> dict:
    """`run`, returning the summary as a dict (the entry point from before the stage contract)."""
    return run(dataclasses.replace(cfg, quiet=cfg.quiet or not progress)).to_json()


def run(config: TokenizeConfig) -> TokenizeSummary:
    """Run (or resume) the job; the summary is also written to `<out_dir>/summary.json`. The resolved config goes
    into out_dir once it is known to be this job's directory (a foreign one is refused untouched)."""
    cfg = dataclasses.replace(config).validate()  # a copy: the plan may narrow segment_kb
    t0 = time.perf_counter()
    tok = get_tokenizer(cfg.tokenizer)
    out = Path(cfg.out_dir)
    plan, parts = _plan(cfg, tok)
    _prepare_out_dir(out, plan, cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved_config(config, out, "tokenize")
    tok.save(out / TOKENIZER_DIR)
    atomic_write_text(out / PLAN_FILE, json.dumps(plan, indent=1))

    results = {i: r for i in range(len(parts)) if (r := _done(out, i)) is not None}
    todo = [p for p in parts if p.index not in results]
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(todo)))
    bar = progress_bar(
        total=sum(p.size for p in parts),
        initial=sum(p.size for p in parts if p.index in results),
        unit="B",
        unit_scale=True,
        desc="tokenize",
        disable=cfg.quiet,
        dynamic_ncols=True,
    )
    with bar:
        if workers <= 1:
            for part in todo:
                results[part.index] = process_part(part, tok, cfg, out)
                bar.update(part.size)
        else:
            ctx = _fork_context()
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=(tok, cfg, out, os.getpid())
            ) as pool:
                futures = [pool.submit(_work, p) for p in todo]
                try:
                    for fut in as_completed(futures):
                        r = fut.result()
                        results[r["part"]] = r
                        bar.update(r["input_bytes"])
                except BaseException:
                    for fut in futures:  # parts already running finish (and are kept); queued ones are dropped
                        fut.cancel()
                    raise
    return _summarize(
        cfg,
        tok,
        out,
        [results[i] for i in range(len(parts))],
        resumed=len(parts) - len(todo),
        seconds=time.perf_counter() - t0,
    )


def _summarize(
    cfg: TokenizeConfig, tok: Tokenizer, out: Path, results: list[dict], resumed: int, seconds: float
) -> TokenizeSummary:
    total = {k: sum(r[k] for r in results) for k in PART_COUNTS}
    problems = [p for r in results for p in r["problems"]][:5]
    text_tokens = total["train_tokens"] + total["val_tokens"] - total["separators"]
    summary = TokenizeSummary(
        **total,
        tokens=total["train_tokens"] + total["val_tokens"],
        bytes_per_token=total["text_bytes"] / text_tokens if text_tokens else 0.0,
        vocab_size=tok.vocab_size,
        parts=len(results),
        parts_resumed=resumed,
        problems=problems,
        seconds=seconds,
        out_dir=str(out),
    )
    problem = None
    if total["documents"] == 0 and total["segments"] == 0:
        problem = f"the corpus is empty: no document text in {', '.join(cfg.inputs)}"
    elif cfg.val_fraction > 0 and total["val_tokens"] == 0:
        n = total["segments"]
        problem = (
            f"the val split is empty: the corpus gave {n} segment(s) x val_fraction {cfg.val_fraction} < 1 (a segment "
            "is a document, or a piece of a long one cut only after a newline or before a space between letters, "
            f"which this text lacks): raise --val-fraction to at least {1 / n:.3g}, give more documents, or pass "
            "--val-fraction 0 for no val split"
        )
    elif total["train_tokens"] == 0:
        # The val sampler starts at a phase fixed by the part's path, so a corpus of one segment lands in val on
        # about val_fraction of paths: an empty train split is as unusable as an empty val split.
        problem = (
            f"the train split is empty: the corpus gave {total['segments']} segment(s) and the val split took them "
            f"all (val_fraction {cfg.val_fraction}): give more documents, or pass --val-fraction 0 for no val split"
        )
    if problem:
        # No shards of a failed run are left for `kiln train` to read, nor a plan that would refuse the fixed rerun.
        for index in range(len(results)):
            for split in ("train", "val"):
                (out / f"{split}_{index:06d}.bin").unlink(missing_ok=True)
        shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
        (out / PLAN_FILE).unlink(missing_ok=True)
        (out / SUMMARY_FILE).unlink(missing_ok=True)
        raise ValueError(problem)
    summary.write(out / SUMMARY_FILE)
    return summary
