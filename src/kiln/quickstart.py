"""`kiln quickstart`: every stage for real, on bundled data, in one workspace — then the playground.

    serve the bundled Python docs site on 127.0.0.1 -> kiln crawl -> kiln ingest (Common Crawl samples)
    -> kiln clean -> kiln tokenizer train -> kiln tokenize -> kiln train -> kiln generate -> kiln serve

Each stage is the ordinary `kiln` command, run in this process through the CLI's own entry point, and
printed before it runs: what the quickstart does, a user can redo stage by stage. A stage that finished
leaves a marker in `<workspace>/.quickstart/`, so an interrupted quickstart resumes at the stage it was
in (and that stage resumes its own work where it can: clean, tokenize and train do).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import math
import shlex
import shutil
import socketserver
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from kiln.utils.io import atomic_write_text

SITE_ARCHIVE = "python-3.11.2-docs-html.tar.xz"
PROMPTS = ("Once upon a time", "The Python interpreter")


def assets() -> Path:
    return Path(str(resources.files("kiln") / "assets" / "quickstart"))


@dataclass
class QuickstartConfig:
    """Options of `kiln quickstart`."""

    workspace: Path = Path("kiln-quickstart")
    minutes: float = 5.0
    """Training budget (the training loop's wall clock); the other stages take about a minute together."""
    serve: bool = True
    port: int = 8000
    max_pages: int = 0
    """Pages to crawl (0 = the whole bundled site, 526 reachable pages)."""
    vocab_size: int = 4096
    workers: int = 0
    train_overrides: list[str] = field(default_factory=list)
    """Extra `kiln train` key=value settings (after the quickstart's own, so they win)."""


@dataclass
class Stage:
    name: str
    title: str
    argv: Callable[[], list[str]]
    """The kiln command (arguments after `kiln`), computed when the stage runs."""
    before: Callable[[], None] | None = None
    shell: list[str] = field(default_factory=list)
    """Commands to print ahead of the kiln command (e.g. the web server the crawl reads from)."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[int]:
    """A static web server for `root` on a free 127.0.0.1 port (the stdlib's, as `python -m http.server`)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as httpd:
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield httpd.server_address[1]
        finally:
            httpd.shutdown()


def unigram_loss(tokens_dir: Path) -> float:
    """Cross-entropy (nats/token) of the val tokens under the train tokens' unigram frequencies (add-one
    smoothing): the loss of a model that ignores context, which a trained model must beat."""
    from kiln.tokenize.shards import open_shard, read_header

    train = sorted(tokens_dir.glob("train_*.bin"))
    val = sorted(tokens_dir.glob("val_*.bin"))
    vocab = read_header(train[0]).vocab_size
    counts = np.ones(vocab, dtype=np.float64)
    for path in train:
        counts += np.bincount(np.asarray(open_shard(path), dtype=np.int64), minlength=vocab)[:vocab]
    logp = np.log(counts / counts.sum())
    val_ids = np.concatenate([np.asarray(open_shard(p), dtype=np.int64) for p in val])
    return float(-logp[val_ids].mean())


class Quickstart:
    def __init__(self, cfg: QuickstartConfig, out: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.ws = cfg.workspace
        self.out = out
        self.markers = self.ws / ".quickstart"
        self.port: int | None = None
        self.samples: list[str] = []
        self._site_server: contextlib.ExitStack | None = None

    # ------------------------------------------------------------------ paths
    def path(self, name: str) -> Path:
        return self.ws / name

    @property
    def run_dir(self) -> Path:
        return self.ws / "models" / "quickstart"

    def stages(self) -> list[Stage]:
        cfg, a = self.cfg, assets()
        text_inputs = [str(self.path("clean")), str(a / "tinystories.txt.gz")]
        crawl_extra = ["--max-pages", str(cfg.max_pages)] if cfg.max_pages else []
        workers = ["--workers", str(cfg.workers)] if cfg.workers else []
        return [
            Stage(
                "crawl",
                "Crawl: a real HTTP crawl of the bundled Python docs site, served on 127.0.0.1",
                lambda: [
                    "crawl",
                    f"http://127.0.0.1:{self.port}/index.html",
                    "--out",
                    str(self.path("crawl")),
                    "--delay",
                    "0",
                    "--per-host",
                    "8",
                    "--concurrency",
                    "8",
                    "--quiet",
                    *crawl_extra,
                ],
                before=self._start_site,
                shell=[f"python -m http.server --bind 127.0.0.1 --directory {self.path('site') / 'html'} PORT &"],
            ),
            Stage(
                "ingest",
                "Ingest: Common Crawl and wget WARC samples -> HTML responses",
                lambda: ["ingest", str(a / "warc"), "--out", str(self.path("ingest")), "--quiet"],
            ),
            Stage(
                "clean",
                "Clean: extract text, language ID, Gopher/C4/FineWeb filters, dedup, PII -> Parquet",
                lambda: [
                    "clean",
                    str(self.path("crawl")),
                    str(self.path("ingest")),
                    "--out",
                    str(self.path("clean")),
                    "--quiet",
                    *workers,
                ],
            ),
            Stage(
                "tokenizer",
                "Tokenizer: train a byte-level BPE vocabulary on the cleaned web text + TinyStories",
                lambda: [
                    "tokenizer",
                    "train",
                    *text_inputs,
                    "--vocab-size",
                    str(cfg.vocab_size),
                    "--out",
                    str(self.path("tokenizer")),
                    "--quiet",
                ],
            ),
            Stage(
                "tokenize",
                "Tokenize: text -> train/val token shards",
                lambda: [
                    "tokenize",
                    *text_inputs,
                    "--tokenizer",
                    str(self.path("tokenizer")),
                    "--out",
                    str(self.path("tokens")),
                    "--val-fraction",
                    "0.05",
                    "--quiet",
                    *workers,
                ],
            ),
            Stage("train", "Pretrain: a small Llama-style transformer, on the clock", self._train_argv),
            Stage("sample", "Generate: samples from the trained model", lambda: []),
        ]

    # ------------------------------------------------------------------ stage details
    def _start_site(self) -> None:
        site = self.path("site")
        if not (site / "html" / "index.html").is_file():
            self.out(f"$ mkdir -p {site} && tar -xJf {assets() / SITE_ARCHIVE} -C {site}")
            tmp = site.with_name("site.partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with tarfile.open(assets() / SITE_ARCHIVE) as tar:
                tar.extractall(tmp, filter="data")
            shutil.rmtree(site, ignore_errors=True)
            tmp.rename(site)
        # An unfinished crawl of an earlier run used another port: its URLs would not match. Start afresh.
        shutil.rmtree(self.path("crawl"), ignore_errors=True)
        stack = contextlib.ExitStack()
        self.port = stack.enter_context(serve_directory(site / "html"))
        self._site_server = stack

    def _train_argv(self) -> list[str]:
        settings = [
            f"data={self.path('tokens')}",
            f"out_dir={self.run_dir}",
            "preset=char-cpu",
            "model.n_embd=128",
            "model.n_head=4",
            "model.block_size=256",
            "batch_size=16",
            "optimizer=muon",
            "muon_lr=0.04",
            "lr=6e-3",
            "warmup_steps=20",
            "schedule=cosine",
            "max_steps=1000000",
            f"max_minutes={self.cfg.minutes}",
            "eval_interval=1000000",
            "eval_batches=10",
            "sample_tokens=0",
        ]
        from kiln.train.state import latest_checkpoint

        if self.run_dir.exists() and latest_checkpoint(self.run_dir) is not None:
            return ["train", "--resume", str(self.run_dir)]
        return ["train", *settings, *self.cfg.train_overrides, "overwrite=true"]

    # ------------------------------------------------------------------ running
    def done(self, stage: str) -> bool:
        return (self.markers / f"{stage}.done").is_file()

    def mark(self, stage: str, info: dict[str, Any]) -> None:
        self.markers.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.markers / f"{stage}.done", json.dumps(info, indent=1))

    def run(self) -> int:
        from kiln.cli import main as kiln

        self.ws.mkdir(parents=True, exist_ok=True)
        t_all = time.perf_counter()
        try:
            for i, stage in enumerate(self.stages(), 1):
                self.out(f"\n== {i}. {stage.title}")
                if self.done(stage.name):
                    self.out(f"   done in an earlier run (remove {self.markers / (stage.name + '.done')} to redo)")
                    continue
                t0 = time.perf_counter()
                if stage.name == "sample":
                    self._sample(kiln)
                else:
                    if stage.before:
                        stage.before()
                    for line in stage.shell:
                        self.out(f"$ {line.replace('PORT', str(self.port))}")
                    argv = stage.argv()
                    self.out("$ kiln " + shlex.join(argv))
                    rc = kiln(argv)
                    if rc != 0:
                        self.out(f"kiln quickstart: stage '{stage.name}' failed (exit {rc}); fix and rerun to resume")
                        return rc
                    if self._site_server is not None:
                        self._site_server.close()
                        self._site_server = None
                self.mark(stage.name, {"seconds": time.perf_counter() - t0})
        finally:
            if self._site_server is not None:
                self._site_server.close()
        summary = self.summary()
        summary["seconds"] = time.perf_counter() - t_all
        atomic_write_text(self.ws / "summary.json", json.dumps(summary, indent=1))
        self.print_summary(summary)
        if self.cfg.serve:
            argv = ["serve", "--models", str(self.ws / "models"), "--port", str(self.cfg.port)]
            self.out("\n== 8. Play: the OpenAI-compatible API and the playground (Ctrl-C to stop)")
            self.out("$ kiln " + shlex.join(argv))
            return kiln(argv)
        return 0

    def _sample(self, kiln: Callable[[list[str]], int]) -> None:
        texts = []
        for prompt in PROMPTS:
            argv = [
                "generate",
                "--checkpoint",
                str(self.run_dir),
                "--prompt",
                prompt,
                "--max-new-tokens",
                "80",
                "--temperature",
                "0.8",
                "--top-k",
                "50",
                "--seed",
                "1",
            ]
            self.out("$ kiln " + shlex.join(argv))
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                rc = kiln(argv)
            if rc != 0:
                raise RuntimeError(f"kiln generate failed (exit {rc})")
            texts.append(buf.getvalue().rstrip())
            self.out(texts[-1])
        atomic_write_text(self.ws / "samples.json", json.dumps(texts, indent=1, ensure_ascii=False))

    # ------------------------------------------------------------------ the summary
    def summary(self) -> dict[str, Any]:
        from kiln.model.checkpoint import read_config, resolve_checkpoint
        from kiln.tokenizer import load_tokenizer

        def load(path: Path) -> Any:
            return json.loads(path.read_text(encoding="utf-8"))

        crawl = load(self.path("crawl") / "summary.json")
        clean = load(self.path("clean") / "stats.json")
        tokens = load(self.path("tokens") / "summary.json")
        cfg, meta = read_config(resolve_checkpoint(self.run_dir))
        import torch

        from kiln.model import GPT

        with torch.device("meta"):
            params = GPT(cfg).num_params()
        return {
            "pages_crawled": crawl["pages"],
            "crawl_failed": crawl.get("failed", {}),
            "clean_steps": [
                {k: s[k] for k in ("name", "in", "kept", "dropped", "dropped_by_reason")} for s in clean["steps"]
            ],
            "documents_kept": clean["documents_out"],
            "vocab_size": load_tokenizer(self.path("tokenizer")).vocab_size,
            "bytes_per_token": tokens["bytes_per_token"],
            "train_tokens": tokens["train_tokens"],
            "val_tokens": tokens["val_tokens"],
            "parameters": params,
            "steps": meta.get("step"),
            "val_loss": meta.get("val_loss"),
            "val_bpb": meta.get("val_bpb"),
            "unigram_val_loss": unigram_loss(self.path("tokens")),
            "samples": json.loads((self.ws / "samples.json").read_text(encoding="utf-8")),
            "playground": f"http://127.0.0.1:{self.cfg.port}/" if self.cfg.serve else None,
        }

    def print_summary(self, s: dict[str, Any]) -> None:
        out = self.out
        out("\n== Summary")
        failed = ", ".join(f"{n} {r}" for r, n in s["crawl_failed"].items()) or "none"
        out(f"crawl      {s['pages_crawled']} pages (failed: {failed})")
        out(f"clean      {'step':<18} {'in':>6} {'kept':>6}  top reasons dropped")
        for step in s["clean_steps"]:
            reasons = sorted(step["dropped_by_reason"].items(), key=lambda kv: -kv[1])[:2]
            why = ", ".join(f"{r} {n}" for r, n in reasons)
            out(f"           {step['name']:<18} {step['in']:>6} {step['kept']:>6}  {why}")
        out(f"tokenizer  BPE, vocab {s['vocab_size']:,}, {s['bytes_per_token']:.2f} bytes/token")
        out(f"tokens     {s['train_tokens']:,} train, {s['val_tokens']:,} val")
        loss, base = s["val_loss"], s["unigram_val_loss"]
        beat = "beats" if loss is not None and loss < base else "does NOT beat"
        out(f"model      {s['parameters']:,} parameters, {s['steps']} steps")
        if loss is not None and math.isfinite(loss):
            bpb = s["val_bpb"]
            out(f"val loss   {loss:.3f} nats/token ({bpb:.3f} bits/byte); unigram baseline {base:.3f}: {beat} it")
        for text in s["samples"]:
            out("sample     " + text.replace("\n", "\n           ")[:600])
        out(f"workspace  {self.ws}   ({s['seconds']:.0f} s)")
        if s["playground"]:
            out(f"playground {s['playground']}")


def quickstart(cfg: QuickstartConfig) -> int:
    if cfg.minutes <= 0:
        raise ValueError(f"--minutes must be > 0, got {cfg.minutes}")
    return Quickstart(cfg, out=lambda line: print(line, flush=True)).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(quickstart(QuickstartConfig()))
