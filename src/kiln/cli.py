"""`kiln <stage> ...`: one command line for every stage.

Each subcommand parses its arguments and hands over to the stage's own module; nothing here knows how a
stage works inside. Configs are typed dataclasses from a TOML file plus `key=value` overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from kiln import __version__


def _preset_name(path: str | None, overrides: Sequence[str]) -> str:
    """The `preset` a train config asks for (an override beats the file), read before the full load."""
    import tomllib

    from kiln.config import parse_override
    from kiln.train.config import TrainConfig

    name = TrainConfig.preset
    if path and Path(path).is_file():
        # A malformed file is reported by load_config, naming the file.
        with contextlib.suppress(tomllib.TOMLDecodeError, UnicodeDecodeError):
            name = str(tomllib.loads(Path(path).read_text(encoding="utf-8")).get("preset", name))
    for item in overrides:
        key, value = parse_override(item)
        if key == "preset":
            name = str(value)
    return name


def _train(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.model import preset
    from kiln.train.config import TrainConfig
    from kiln.train.trainer import TrainingDiverged, resume_config, train

    files = [a for a in args.args if "=" not in a]
    overrides = [a for a in args.args if "=" in a]
    if len(files) > 1:
        raise ValueError(f"give at most one config file, got {files}; overrides look like key=value")
    path = files[0] if files else None
    if args.resume:
        if path:
            raise ValueError("--resume continues a run with its own config; give only key=value overrides")
        cfg = resume_config(args.resume, overrides)
    else:
        # The preset picks the model's starting shape; the file's and the command line's model.* keys apply on top.
        name = _preset_name(path, overrides)
        cfg = load_config(TrainConfig, path, overrides, base=TrainConfig(preset=name, model=preset(name)))
    try:
        summary = train(cfg, resume=args.resume)
    except TrainingDiverged as e:
        print(f"kiln train: {e}", file=sys.stderr)
        return 1
    if summary["interrupted"]:
        return 128 + int(summary["interrupted"])
    if not summary.get("is_main", True):
        return 0
    print(f"\nval loss {summary['val_loss']:.4f} ({summary['val_bpb']:.3f} bits/byte) after {summary['steps']} steps")
    print(f"checkpoints: {summary['out_dir']}   (try: kiln generate --checkpoint {summary['out_dir']})")
    if summary["sample"]:
        print("\nsample:\n" + summary["sample"])
    return 0


def _generate(args: argparse.Namespace) -> int:
    import torch

    from kiln.generate import SamplingParams, stream_batch
    from kiln.model import build
    from kiln.model.checkpoint import load_checkpoint
    from kiln.tokenizer import ByteTokenizer

    params = SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        stop=tuple(args.stop or ()),
        seed=args.seed,
        logprobs=args.logprobs,
    ).validate()
    if args.checkpoint:
        model, tokenizer, _ = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(args.seed or 0)
        model = build(args.preset).eval()
        tokenizer = None
        print(f"(randomly initialised {args.preset}: expect noise)", file=sys.stderr)
    tokenizer = tokenizer or ByteTokenizer()
    prompt = tokenizer.encode(args.prompt) if args.prompt else tokenizer.encode("\n")
    n = args.num_samples
    for i in range(n):
        if n > 1:
            print(f"--- sample {i + 1} ---")
        sample_params = params if params.seed is None else SamplingParams(**{**vars(params), "seed": params.seed + i})
        print(args.prompt, end="", flush=True)
        events = []
        for ev in stream_batch(model, [prompt], sample_params, tokenizer=tokenizer):
            print(ev.text, end="", flush=True)
            events.append(ev)
        print()
        if args.logprobs:
            for ev in events:
                alts = "  ".join(f"{tokenizer.decode([t])!r} {p:.2f}" for t, p in ev.top)
                print(f"{tokenizer.decode([ev.token_id])!r:>12} {ev.logprob:7.3f} | {alts}")
    return 0


def _model(args: argparse.Namespace) -> int:
    import torch

    from kiln.model import PRESETS, build

    names = args.names or list(PRESETS)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]

    def gib(n: int) -> str:
        return f"{n / 2**30:,.1f}"

    header = f"{'preset':<12} {'params':>16} {'non-embedding':>16} {'GFLOP/token':>12} "
    header += f"{'weights GiB':>12} {'train GiB':>10} {'KV GiB':>8}  description"
    print(f"memory in {args.dtype}; training = weights + grads + AdamW states + fp32 master; KV for 1 x context")
    print(header)
    for name in names:
        model = build(name, device="meta")
        mem = model.memory_report(dtype=dtype)
        print(
            f"{name:<12} {model.num_params():>16,} {model.num_params(non_embedding=True):>16,} "
            f"{model.flops_per_token() / 1e9:>12,.2f} {gib(mem['weights']):>12} {gib(mem['training_total']):>10} "
            f"{gib(mem['kv_cache']):>8}  {PRESETS[name][0]}"
        )
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from kiln.tokenize.corpus import ReadStats, iter_corpus
    from kiln.tokenizer import CharTokenizer, WordTokenizer, train_bpe
    from kiln.tokenizer.bpe import CHAT_TOKENS, ENDOFTEXT
    from kiln.tokenizer.hf_export import export_hf

    specials = list(dict.fromkeys([ENDOFTEXT, *(args.special or []), *(CHAT_TOKENS if args.chat_tokens else ())]))
    stats = ReadStats()
    max_bytes = int(args.max_mb * 1e6) if args.max_mb else None
    texts = iter_corpus(args.inputs, stats, args.text_field, args.separator, max_bytes)
    bar = tqdm(texts, desc="reading", unit=" docs", dynamic_ncols=True, disable=args.quiet)
    t0 = time.perf_counter()
    if args.kind == "bpe":
        tok = train_bpe(bar, args.vocab_size, args.pattern, specials, args.trainer)
    elif args.kind == "word":
        tok = WordTokenizer.train(bar, args.vocab_size, specials)
    else:
        text = "".join(bar)
        if not text:
            raise ValueError("cannot train a tokenizer on an empty corpus (no text in any document)")
        tok = CharTokenizer.train(text)
    bar.close()
    seconds = time.perf_counter() - t0
    tok.save(args.out)
    print(
        f"{args.kind} tokenizer: vocab {tok.vocab_size:,} from {stats.documents:,} documents "
        f"({stats.text_bytes / 1e6:,.1f} MB of text) in {seconds:.1f} s -> {args.out}"
    )
    if stats.replaced_bytes:
        print(f"note: {stats.replaced_bytes:,} bytes were not valid UTF-8 and were read as U+FFFD")
    if stats.skipped_records:
        print(f"note: skipped {stats.skipped_records:,} records, e.g. {stats.problems[0]}")
    if args.hf and args.kind == "bpe":
        print(f"Hugging Face tokenizer.json: {export_hf(tok, Path(args.out) / 'tokenizer.json')}")
    return 0


def _read_arg_or_stdin(values: Sequence[str] | str | None) -> str:
    if values:
        return values if isinstance(values, str) else " ".join(values)
    return sys.stdin.read()


def _tokenizer_encode(args: argparse.Namespace) -> int:
    from kiln.tokenizer import get_tokenizer

    tok = get_tokenizer(args.tokenizer)
    text = _read_arg_or_stdin(args.text)
    # Char and byte tokenizers have no special tokens, so there is nothing to allow.
    ids = tok.encode(text, "all") if args.allow_special and tok.special_tokens else tok.encode(text)
    print(" ".join(map(str, ids)))
    return 0


def _tokenizer_decode(args: argparse.Namespace) -> int:
    from kiln.tokenizer import get_tokenizer

    tok = get_tokenizer(args.tokenizer)
    raw = _read_arg_or_stdin(args.ids).replace(",", " ").split()
    try:
        ids = [int(x) for x in raw]
    except ValueError:
        raise ValueError(f"token ids must be integers, got {raw[:5]}") from None
    sys.stdout.write(tok.decode(ids) + ("" if args.no_newline else "\n"))
    return 0


def _tokenizer_show(args: argparse.Namespace) -> int:
    from kiln.tokenizer import get_tokenizer
    from kiln.tokenizer.show import render

    text = _read_arg_or_stdin(args.text)
    colour = (not args.no_color and sys.stdout.isatty()) or args.color
    for spec in args.tokenizer:
        tok = get_tokenizer(spec)
        if len(args.tokenizer) > 1:
            print(f"== {spec} (vocab {tok.vocab_size:,})")
        print(render(tok, text, colour=colour))
    return 0


def _tokenizer_export(args: argparse.Namespace) -> int:
    from kiln.tokenizer import BPETokenizer, get_tokenizer
    from kiln.tokenizer.hf_export import export_hf

    tok = get_tokenizer(args.tokenizer)
    if not isinstance(tok, BPETokenizer):
        raise ValueError(f"only byte-level BPE tokenizers export to tokenizer.json, not {tok.kind!r}")
    print(export_hf(tok, args.out))
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from kiln.tokenize.tokenize_corpus import TokenizeConfig, tokenize_corpus

    cfg = TokenizeConfig(
        inputs=args.inputs,
        out_dir=args.out,
        tokenizer=args.tokenizer,
        workers=args.workers,
        val_fraction=args.val_fraction,
        text_field=args.text_field,
        separator=args.separator,
        part_mb=args.part_mb,
        overwrite=args.overwrite,
    )
    s = tokenize_corpus(cfg, progress=not args.quiet)
    rate = s["text_bytes"] / 1e6 / max(s["seconds"], 1e-9)
    print(
        f"{s['documents']:,} documents, {s['tokens']:,} tokens (train {s['train_tokens']:,}, val "
        f"{s['val_tokens']:,}), {s['text_bytes'] / 1e6:,.1f} MB of text, {s['bytes_per_token']:.2f} bytes/token"
    )
    print(
        f"{s['parts']} parts ({s['parts_resumed']} already done) in {s['seconds']:.1f} s ({rate:,.1f} MB/s)"
        f" -> {s['out_dir']}"
    )
    if s["replaced_bytes"]:
        print(f"note: {s['replaced_bytes']:,} bytes were not valid UTF-8 and were read as U+FFFD")
    if s["skipped_records"]:
        print(f"note: skipped {s['skipped_records']:,} records, e.g. {s['problems'][0]}")
    return 0


def _crawl(args: argparse.Namespace) -> int:
    from kiln.acquire.crawl import CrawlConfig, crawl

    cfg = CrawlConfig(
        seeds=list(args.seeds),
        seeds_file=args.seeds_file,
        out_dir=args.out,
        scope=args.scope,
        allow=args.allow or [],
        deny=args.deny or [],
        max_depth=args.max_depth,
        max_pages=args.max_pages,
        max_page_mb=args.max_page_mb,
        concurrency=args.concurrency,
        per_host=args.per_host,
        delay=args.delay,
        timeout=args.timeout,
        retries=args.retries,
        quiet=args.quiet,
    )
    if args.user_agent:
        cfg.user_agent = args.user_agent
    s = crawl(cfg)
    rate = s["pages_this_run"] / max(s["seconds"], 1e-9)
    print(
        f"{s['pages']:,} pages ({s['bytes'] / 1e6:,.1f} MB), {s['pages_this_run']:,} of them in this run"
        f" ({s['seconds']:.1f} s, {rate:,.1f} pages/s); {s['redirects']:,} redirects, {s['queued']:,} still queued"
        f" -> {s['out_dir']}"
    )
    for label in ("skipped", "failed"):
        if s[label]:
            print(f"{label}: " + ", ".join(f"{n} {reason}" for reason, n in sorted(s[label].items())))
    if s["recovered_from_warc"]:
        print(f"recovered {s['recovered_from_warc']} page(s) written just before an interruption")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from kiln.acquire.ingest import ingest

    # 'all' anywhere in a list means no filter; without the option, HTML responses (what `kiln clean` reads).
    types = None if "all" in (args.type or []) else (args.type or ["response"])
    content_types = None if "all" in (args.content_type or []) else (args.content_type or ["text/html"])
    stats = ingest(args.inputs, args.out, record_types=types, content_types=content_types)
    print(
        f"{stats.files:,} files, {stats.records:,} records read, {stats.kept:,} kept, "
        f"{stats.skipped_malformed:,} skipped as malformed -> {args.out}"
    )
    if not args.quiet:
        if stats.problems:
            print(f"first problem: {stats.problems[0]}")
        print("by type: " + (", ".join(f"{t} {n:,}" for t, n in stats.by_type.most_common()) or "none"))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from kiln.clean.runner import CleanConfig, clean, load_steps_toml

    cfg = CleanConfig(
        inputs=args.inputs, out_dir=args.out, workers=args.workers, executor=args.executor, ray_address=args.ray_address
    )
    if args.config:
        cfg.steps = load_steps_toml(args.config)
    try:
        stats = clean(cfg, progress=not args.quiet)
    except (ConnectionError, ImportError) as e:
        if isinstance(e, ImportError) and e.name != "ray":
            raise  # a broken install of a step's dependency: keep the traceback
        print(f"kiln clean: error: {e}", file=sys.stderr)  # no Ray, or no cluster at --ray-address: one line
        return 2
    print(f"{'step':<20} {'in':>9} {'kept':>9} {'dropped':>9} {'seconds':>8}  top reasons")
    for s in stats["steps"]:
        reasons = ", ".join(f"{r} {n}" for r, n in list(s["dropped_by_reason"].items())[:3])
        print(f"{s['name']:<20} {s['in']:>9,} {s['kept']:>9,} {s['dropped']:>9,} {s['seconds']:>8.2f}  {reasons}")
    print(f"{stats['documents_out']:,} documents kept -> {args.out} ({stats['seconds']:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln", description="Make a language model from raw web text and play with it."
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")

    p = sub.add_parser("train", help="pretrain a model (default: char-level Tiny Shakespeare on CPU)")
    p.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG.toml] [key=value ...]",
        help="an optional TOML config file, then overrides, e.g. max_minutes=3 model.n_layer=4",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue a run exactly from its latest checkpoint (a run directory or one checkpoint directory)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="sample text from a checkpoint or a randomly initialised preset")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a checkpoint directory written by kiln train")
    src.add_argument("--preset", help="a model preset, randomly initialised (see kiln model)")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling, applied after top-k")
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", help="a stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--logprobs", type=int, default=0, help="print each token's log-prob and N alternatives")
    p.set_defaults(func=_generate)

    p = sub.add_parser("model", help="parameter counts, FLOPs and memory of model presets (on the meta device)")
    p.add_argument("names", nargs="*", help="presets to show (default: all)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="bf16")
    p.set_defaults(func=_model)

    p = sub.add_parser("crawl", help="fetch web pages politely into WARC files (resumable)")
    p.add_argument("seeds", nargs="*", help="seed URLs")
    p.add_argument("--seeds-file", help="a file with one seed URL per line")
    p.add_argument("--out", required=True, help="output directory (WARC files, crawl.sqlite, summary.json)")
    p.add_argument("--scope", choices=["host", "domain", "any"], default="host", help="which links to follow")
    p.add_argument("--allow", action="append", help="follow only URLs matching one of these regexes")
    p.add_argument("--deny", action="append", help="never follow URLs matching this regex")
    p.add_argument("--max-depth", type=int, default=10)
    p.add_argument("--max-pages", type=int, default=0, help="stop after this many pages (0 = no limit)")
    p.add_argument("--max-page-mb", type=float, default=5.0, help="truncate bodies beyond this size")
    p.add_argument("--concurrency", type=int, default=16, help="fetches in flight over all hosts")
    p.add_argument("--per-host", type=int, default=1, help="connections per host")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one host")
    p.add_argument("--timeout", type=float, default=20.0, help="read timeout in seconds")
    p.add_argument("--retries", type=int, default=2, help="extra attempts after 5xx, 429 or network errors")
    p.add_argument("--user-agent", help="override kiln's User-Agent")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_crawl)

    p = sub.add_parser("ingest", help="read WARC/WET/ARC files (gzip or plain) into WARC files for kiln clean")
    p.add_argument("inputs", nargs="+", metavar="FILE", help=".warc/.warc.gz/.arc/.arc.gz files (WET, WAT too) or dirs")
    p.add_argument("--out", required=True, help="output directory (ingest-NNNNN.warc.gz, ingest-stats.json)")
    p.add_argument("--type", action="append", help="record type to keep (repeatable; default response; 'all')")
    p.add_argument(
        "--content-type",
        action="append",
        help="content-type prefix of responses to keep (repeatable; default text/html; 'all')",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("clean", help="WARC/HTML or text -> filtered, deduplicated Parquet (FineWeb-style)")
    p.add_argument("inputs", nargs="+", help="WARC/ARC, JSONL or Parquet files, or directories of them")
    p.add_argument("--out", required=True, help="output directory (Parquet shards, stats.json, dropped.jsonl)")
    p.add_argument("--config", help="a TOML pipeline: [[steps]] tables with a name and options")
    p.add_argument("--workers", type=int, default=0, help="processes for the per-shard steps (0 = one per CPU)")
    p.add_argument(
        "--executor", choices=["local", "ray"], default="local",
        help="run the per-shard steps in local processes or as Ray tasks (same output; needs kiln[ray])",
    )  # fmt: skip
    p.add_argument(
        "--ray-address", help="Ray cluster to use: auto, HOST:6379 or ray://HOST:10001 (default: start Ray here)"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_clean)

    p = sub.add_parser("tokenize", help="turn a corpus into train/val token shards for kiln train")
    p.add_argument("inputs", nargs="+", help=".txt/.md/.jsonl/.parquet files (optionally .gz) or directories")
    p.add_argument(
        "--tokenizer", required=True, help="a tokenizer directory, 'byte', or gpt2/cl100k_base/o200k_base/..."
    )
    p.add_argument("--out", required=True, help="output directory for train_*.bin, val_*.bin and tokenizer/")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU)")
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--text-field", default="text", help="JSONL key / Parquet column holding the text")
    p.add_argument("--separator", help="split .txt files into documents at this string, e.g. '<|endoftext|>'")
    p.add_argument("--part-mb", type=float, default=32.0, help="input MB per work unit and shard")
    p.add_argument("--overwrite", action="store_true", help="replace shards from a different run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("quickstart", help="every stage for real on bundled data (crawl ... train), then the playground")
    p.add_argument("--workspace", type=Path, default=Path("kiln-quickstart"), help="where every stage writes")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget in minutes (the rest takes ~1-2)")
    p.add_argument("--no-serve", action="store_true", help="stop after the summary instead of starting kiln serve")
    p.add_argument("--port", type=int, default=8000, help="port of the playground")
    p.add_argument("--max-pages", type=int, default=0, help="crawl at most this many pages (0 = the whole site)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--workers", type=int, default=0, help="processes for clean and tokenize (0 = one per CPU)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", help="extra kiln train setting")
    p.set_defaults(func=_quickstart)

    p = sub.add_parser(
        "serve", help="an OpenAI-compatible API and the web playground for the checkpoints in a directory"
    )
    p.add_argument("--models", required=True, type=Path, help="a directory of checkpoints or training runs (or one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (anything but loopback needs --api-key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $KILN_API_KEY)")
    p.add_argument("--max-batch", type=int, default=32, help="sequences decoded together per model")
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests per model before 429")
    p.add_argument("--max-memory-gb", type=float, default=4.0, help="loaded models (weights + KV cache) before LRU")
    p.add_argument("--vocab-dir", type=Path, help="GPT-2 / cl100k / o200k files for the tokenizer visualiser")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=_serve)

    tk = sub.add_parser("tokenizer", help="train, inspect and use tokenizers").add_subparsers(
        dest="action", required=True, metavar="<action>"
    )
    p = tk.add_parser("train", help="learn a vocabulary from a corpus")
    p.add_argument("inputs", nargs="+", help=".txt/.md/.jsonl/.parquet files (optionally .gz) or directories")
    p.add_argument("--out", required=True, help="directory to save the tokenizer in")
    p.add_argument("--kind", choices=["bpe", "word", "char"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=8192, help="total ids, bytes + merges + special tokens")
    p.add_argument("--pattern", default="gpt4", help="split pattern: gpt4 (default), gpt2, o200k, or a regex")
    p.add_argument("--trainer", choices=["rustbpe", "reference"], default="rustbpe", help="fast, or readable Python")
    p.add_argument("--special", action="append", help="extra special token (repeatable); <|endoftext|> is always in")
    p.add_argument("--chat-tokens", action="store_true", help="also reserve <|im_start|> and <|im_end|>")
    p.add_argument("--text-field", default="text")
    p.add_argument("--separator", help="split .txt files into documents at this string")
    p.add_argument("--max-mb", type=float, help="read at most about this many MB of the corpus")
    p.add_argument("--hf", action="store_true", help="also write a Hugging Face tokenizer.json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_tokenizer_train)

    p = tk.add_parser("encode", help="print the token ids of text (argument or stdin)")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("text", nargs="*")
    p.add_argument("--allow-special", action="store_true", help="turn special-token text into special ids")
    p.set_defaults(func=_tokenizer_encode)

    p = tk.add_parser("decode", help="print the text of token ids (arguments or stdin)")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("ids", nargs="*")
    p.add_argument("--no-newline", action="store_true")
    p.set_defaults(func=_tokenizer_decode)

    p = tk.add_parser("show", help="text split into coloured tokens with ids (several --tokenizer to compare)")
    p.add_argument("--tokenizer", action="append", required=True)
    p.add_argument("text", nargs="*")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--color", action="store_true", help="colour even when not writing to a terminal")
    p.set_defaults(func=_tokenizer_show)

    p = tk.add_parser("export-hf", help="write a BPE tokenizer as a Hugging Face tokenizer.json")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True, help="a .json path or a directory")
    p.set_defaults(func=_tokenizer_export)
    return parser


def _quickstart(args: argparse.Namespace) -> int:
    from kiln.quickstart import QuickstartConfig, quickstart

    cfg = QuickstartConfig(
        workspace=args.workspace,
        minutes=args.minutes,
        serve=not args.no_serve,
        port=args.port,
        max_pages=args.max_pages,
        vocab_size=args.vocab_size,
        workers=args.workers,
        train_overrides=args.train,
    )
    return quickstart(cfg)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from kiln.serve import ServeConfig, create_app

    api_key = args.api_key or os.environ.get("KILN_API_KEY") or None
    if args.host not in LOOPBACK and not args.host.startswith("127.") and not api_key:
        raise ValueError(
            f"binding {args.host} exposes the server beyond this machine: give --api-key (or $KILN_API_KEY)"
        )
    vocab_dir = args.vocab_dir or (Path(os.environ["KILN_VOCAB_DIR"]) if os.environ.get("KILN_VOCAB_DIR") else None)
    config = ServeConfig(
        models=args.models,
        api_key=api_key,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_memory_gb=args.max_memory_gb,
        vocab_dir=vocab_dir,
    )
    app = create_app(config)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"kiln serve: playground http://{host}:{args.port}/   API http://{host}:{args.port}/v1", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        # Configuration and input mistakes are the user's to fix: say what is wrong, without a traceback.
        print(f"kiln {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
