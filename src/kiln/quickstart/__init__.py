"""`kiln quickstart`: every stage for real, on bundled data, in one workspace — then the playground.

    serve the bundled Python docs site on 127.0.0.1 -> kiln crawl -> kiln ingest (Common Crawl samples)
    -> kiln clean -> kiln tokenizer train -> kiln tokenize -> kiln train -> kiln generate
    -> kiln sft (an instruction task built from TinyStories) -> kiln serve

Each stage is the ordinary stage: the quickstart builds its config, prints the equivalent `kiln` command line
(`kiln.command.command_line`, which parses back to the same config) and calls the stage's `run(config)`: what the
quickstart does, a user can redo stage by stage. A stage that finished
leaves a marker in `<workspace>/.quickstart/`, so an interrupted quickstart resumes at the stage it was
in (and that stage resumes its own work where it can: clean, tokenize and train do).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
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

from kiln.quickstart.posttrain import InstructionTask
from kiln.quickstart.resume import resume_or_start
from kiln.stage import Summary
from kiln.utils.io import atomic_write_text

SITE_ARCHIVE = "python-3.11.2-docs-html.tar.xz"
PROMPTS = ("Once upon a time", "The Python interpreter")


def assets() -> Path:
    return Path(str(resources.files("kiln") / "assets" / "quickstart"))


@dataclass
class QuickstartConfig:
    """Options of `kiln quickstart`."""

    workspace: Path = Path("kiln-quickstart")
    """Where every stage writes (a rerun with the same workspace resumes)."""
    minutes: float = 5.0
    """Training budget (the training loop's wall clock); the other stages take about a minute together."""
    serve: bool = True
    """Start `kiln serve` with the trained model at the end (--no-serve stops after the summary)."""
    port: int = 8000
    """Port of the playground."""
    max_pages: int = 0
    """Pages to crawl (0 = the whole bundled site, 526 reachable pages)."""
    vocab_size: int = 4096
    """Vocabulary size of the BPE tokenizer the quickstart trains."""
    workers: int = 0
    """Processes for clean and tokenize (0 = one per CPU)."""
    sft_minutes: float = 2.0
    """Supervised fine-tuning budget (the instruction task built from TinyStories); 0 skips post-training."""
    rl_minutes: float = 1.0
    """GRPO budget after SFT, rewarded by the share of the instruction's words used; 0 skips it."""
    train_overrides: list[str] = field(default_factory=list)
    """Extra `kiln train` key=value settings (--train KEY=VALUE, repeatable; after the quickstart's own, so they
    win)."""

    def validate(self) -> QuickstartConfig:
        if self.minutes <= 0:
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        if self.rl_minutes < 0:
            raise ValueError(f"--rl-minutes must be >= 0 (0 = no RL), got {self.rl_minutes}")
        if self.sft_minutes < 0:
            raise ValueError(f"--sft-minutes must be >= 0 (0 = no post-training), got {self.sft_minutes}")
        return self


@dataclass
class Stage:
    name: str
    title: str
    config: Callable[[], Any]
    """The stage's config, built when the stage runs (the crawl's URL needs the site server's port)."""
    command: str = ""
    """The kiln command (a key of kiln.stages.STAGES); empty for the quickstart's own sampling step."""
    before: Callable[[], None] | None = None
    shell: list[str] = field(default_factory=list)
    """Commands to print ahead of the kiln command (e.g. the web server the crawl reads from)."""


@dataclass
class QuickstartSummary(Summary):
    """The quickstart's own summary is printed as it goes; this is the exit code of the last stage it ran."""

    code: int = 0
    workspace: str = ""

    def render(self) -> str:
        return ""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


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


class Quickstart(InstructionTask):
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
        from kiln.acquire.crawl import CrawlConfig
        from kiln.acquire.ingest import IngestConfig
        from kiln.clean.config import CleanConfig
        from kiln.tokenize.tokenize_corpus import TokenizeConfig
        from kiln.tokenize.train_tokenizer import TokenizerTrainConfig

        cfg, a = self.cfg, assets()
        text_inputs = [str(self.path("clean")), str(a / "tinystories.txt.gz")]
        return [
            Stage(
                "crawl",
                "Crawl: a real HTTP crawl of the bundled Python docs site, served on 127.0.0.1",
                lambda: CrawlConfig(
                    seeds=[f"http://127.0.0.1:{self.port}/index.html"],
                    out_dir=str(self.path("crawl")),
                    delay=0.0,
                    per_host=8,
                    concurrency=8,
                    max_pages=cfg.max_pages,
                    quiet=True,
                ),
                "crawl",
                before=self._start_site,
                shell=[f"python -m http.server --bind 127.0.0.1 --directory {self.path('site') / 'html'} PORT &"],
            ),
            Stage(
                "ingest",
                "Ingest: Common Crawl and wget WARC samples -> HTML responses",
                lambda: IngestConfig(inputs=[str(a / "warc")], out_dir=str(self.path("ingest")), quiet=True),
                "ingest",
            ),
            Stage(
                "clean",
                "Clean: extract text, language ID, Gopher/C4/FineWeb filters, dedup, PII -> Parquet",
                lambda: CleanConfig(
                    inputs=[str(self.path("crawl")), str(self.path("ingest"))],
                    out_dir=str(self.path("clean")),
                    workers=cfg.workers,
                    quiet=True,
                ),
                "clean",
            ),
            Stage(
                "tokenizer",
                "Tokenizer: train a byte-level BPE vocabulary on the cleaned web text + TinyStories",
                lambda: TokenizerTrainConfig(
                    inputs=text_inputs,
                    vocab_size=cfg.vocab_size,
                    out_dir=str(self.path("tokenizer")),
                    chat_tokens=True,
                    quiet=True,
                ),
                "tokenizer train",
            ),
            Stage(
                "tokenize",
                "Tokenize: text -> train/val token shards",
                lambda: TokenizeConfig(
                    inputs=text_inputs,
                    tokenizer=str(self.path("tokenizer")),
                    out_dir=str(self.path("tokens")),
                    val_fraction=0.05,
                    workers=cfg.workers,
                    quiet=True,
                ),
                "tokenize",
            ),
            Stage("train", "Pretrain: a small Llama-style transformer, on the clock", self._train_config, "train"),
            Stage("sample", "Generate: samples from the trained model", lambda: None),
            *(
                [
                    Stage(
                        "sft",
                        "Post-train: supervised fine-tuning on an instruction task built from TinyStories",
                        self._sft_config,
                        "sft",
                        before=self._write_sft_data,
                    ),
                    *(
                        [Stage("rl", "Post-train: GRPO on the same task, rewarded by a program that counts the words",
                               self._rl_config, "rl", before=self._write_rl_prompts)]
                        if cfg.rl_minutes > 0
                        else []
                    ),
                    Stage("follow", "Check: how often the base and the fine-tuned model follow the instruction",
                          lambda: None),
                ]
                if cfg.sft_minutes > 0
                else []
            ),
        ]  # fmt: skip

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

    def _train_config(self) -> Any:
        from kiln.train.config import load_train_config

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
            f"default_prompt={PROMPTS[0]}",  # what the playground offers this model: a story opening
        ]
        return resume_or_start(load_train_config, self.run_dir, [*settings, *self.cfg.train_overrides])

    # ------------------------------------------------------------------ running
    def done(self, stage: str) -> bool:
        return (self.markers / f"{stage}.done").is_file()

    def mark(self, stage: str, info: dict[str, Any]) -> None:
        self.markers.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.markers / f"{stage}.done", json.dumps(info, indent=1))

    def run_stage(self, command: str, config: Any) -> int:
        """Print `kiln <command> ...` for `config`, then run the stage itself; its exit code."""
        from kiln.command import command_line
        from kiln.stages import STAGES

        spec = STAGES[command]
        resume = getattr(config, "resume", None)
        # A resumed run is its saved config: `--resume DIR` is the command that rebuilds it.
        argv = ["--resume", str(resume)] if resume else command_line(spec, config)
        self.out(f"$ kiln {command} " + shlex.join(argv))
        summary = spec.run_function()(config)
        text = summary.render()
        if text:
            self.out(text)
        return summary.exit_code

    def run(self) -> int:
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
                    self._sample()
                elif stage.name == "follow":
                    self._follow()
                else:
                    if stage.before:
                        stage.before()
                    for line in stage.shell:
                        self.out(f"$ {line.replace('PORT', str(self.port))}")
                    rc = self.run_stage(stage.command, stage.config())
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
            from kiln.stages import STAGES

            # Through the stage table: nothing below the CLI imports kiln.serve (import-linter checks it).
            serve_config = STAGES["serve"].config_class()(
                models=self.ws / "models", port=self.cfg.port, data_dir=self.path("clean")
            )
            self.out(
                f"\n== {len(self.stages()) + 1}. Play: the OpenAI-compatible API and the playground (Ctrl-C to stop)"
            )
            return self.run_stage("serve", serve_config)
        return 0

    def _sample(self) -> None:
        from kiln.generate.run import GenerateConfig

        texts = []
        for prompt in PROMPTS:
            config = GenerateConfig(
                checkpoint=self.run_dir, prompt=prompt, max_new_tokens=80, temperature=0.8, top_k=50, seed=1,
                stream=False,
            )  # fmt: skip
            from kiln.command import command_line
            from kiln.stages import STAGES

            self.out("$ kiln generate " + shlex.join(command_line(STAGES["generate"], config)))
            summary = STAGES["generate"].run_function()(config)
            texts.append(summary.samples[0].rstrip())
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
            "playground": self.playground_url() if self.cfg.serve else None,
            "instructions_followed": (
                json.loads((self.ws / "follow.json").read_text(encoding="utf-8"))
                if (self.ws / "follow.json").is_file()
                else None
            ),
        }

    def playground_url(self) -> str:
        """The page, opened on the most post-trained model in chat mode (or the base model)."""
        base = f"http://127.0.0.1:{self.cfg.port}/"
        for path in (self.rl_dir, self.chat_dir):
            if (path / "checkpoints").is_dir():
                return f"{base}?model={path.name}&mode=chat"
        return base

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
        follow = s.get("instructions_followed")
        if follow:
            out(
                f"sft        instructions followed (uses all three words): base {follow['base']:.0%}, after SFT "
                f"{follow['sft']:.0%}; words used: base {follow['base_words']:.0%}, after SFT {follow['sft_words']:.0%}"
                + (f", after RL {follow['rl_words']:.0%} ({follow['rl']:.0%} all three)" if "rl" in follow else "")
            )
        out(f"workspace  {self.ws}   ({s['seconds']:.0f} s)")
        if s["playground"]:
            out(f"playground {s['playground']}")


def run(config: QuickstartConfig) -> QuickstartSummary:
    config.validate()
    code = Quickstart(config, out=lambda line: print(line, flush=True)).run()
    return QuickstartSummary(code=code, workspace=str(config.workspace))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(QuickstartConfig()).exit_code)
