"""`kiln eval CHECKPOINT [TASK ...]`: downstream task scores and bits per byte of a checkpoint."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from kiln.eval.generation_settings import GenerationSettings
from kiln.eval.tasks import TASK_FILES
from kiln.stage import Summary, write_resolved_config


@dataclass
class EvalConfig:
    """What to evaluate, on what, and where the results go."""

    args: list[str]
    """The checkpoint (a checkpoint or training-run directory) first, then task names or .jsonl task files (none:
    every known multiple-choice task; `kiln eval CHECKPOINT arc_easy piqa`). Known: arc_easy, arc_challenge, piqa,
    winogrande, wsc, copa, boolq, commonsense_qa, openbook_qa, siqa, lambada; and gsm8k (generative: run only
    when named)."""
    data_dir: Path | None = None
    """Directory of the full llm-foundry task files (e.g. ../shared/data/eval/llm-foundry); none = the 50-item
    slices bundled with kiln."""
    limit: int | None = None
    """Score only the first N items of each task (none = all)."""
    num_fewshot: int = 0
    """Solved examples of the same task put before each question (0 = zero-shot)."""
    seed: int = 1234
    """Seed of the few-shot example choice (a run repeats exactly)."""
    bpb: list[Path] = field(default_factory=list)
    """Documents to measure bits per byte on (repeatable): text, .jsonl ("text" field), .parquet ("text" column),
    token shards (.bin or a directory of them). With bpb and no task named, only bits per byte is measured."""
    bpb_window: int | None = None
    """Tokens each bits-per-byte window feeds the model (none = the model's block_size)."""
    bpb_stride: int | None = None
    """Tokens between window starts: each window scores only tokens no earlier one did (none = the window, i.e.
    non-overlapping windows, as kiln train's val_bpb; smaller = more context per token, slower)."""
    bpb_max_tokens: int | None = None
    """Read at most this many tokens of each bits-per-byte source (none = all)."""
    batch_tokens: int = 4096
    """Tokens per model call (contexts x their length, continuations x theirs): more = faster, more memory."""
    out_dir: Path | None = None
    """Write results.json (and items/<task>.jsonl with per_item) and the resolved config here (none = don't)."""
    per_item: bool = False
    """Also write each item's log-likelihoods and predictions (items/<task>.jsonl in out_dir)."""
    max_new_tokens: int = 256
    """Generative tasks (gsm8k): most tokens generated per answer (lm-evaluation-harness's max_gen_toks)."""
    temperature: float = 0.0
    """Generative tasks: sampling temperature (0 = greedy, the harness's gsm8k setting)."""
    top_p: float = 1.0
    """Generative tasks: nucleus sampling's probability mass (1 = off)."""
    num_samples: int = 1
    """Generative tasks: answers sampled per question (n of pass@k; > 1 needs temperature > 0)."""
    pass_k: list[int] = field(default_factory=lambda: [1])
    """Generative tasks: the k of each pass@k reported (each <= num_samples), unbiased estimator of Chen et al."""
    gen_batch: int = 32
    """Generative tasks: sequences decoded together (rows of the continuous batcher)."""
    chat: str = "auto"
    """Generative tasks: prompt with the model's chat template (yes), with lm-evaluation-harness's plain gsm8k
    prompt "Question: ... Answer:" (no), or auto: the template when the tokenizer has one and the checkpoint is
    not from a kiln pretraining run (kiln vocabularies reserve ChatML's tokens for later fine-tuning)."""
    device: str = "cpu"
    """Torch device to run on (cpu, cuda, mps)."""
    threads: int | None = None
    """CPU threads for torch (none = torch's default: every core)."""
    progress: bool = True
    """A progress line per task (items/s, ETA) on stderr."""

    @property
    def checkpoint(self) -> Path:
        return Path(self.args[0])

    @property
    def tasks(self) -> list[str]:
        named = self.args[1:]
        if named:
            return named
        return [] if self.bpb else list(TASK_FILES)

    def generation(self, chat: bool | None = None) -> GenerationSettings:
        return GenerationSettings(
            chat=chat,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            num_samples=self.num_samples,
            pass_k=tuple(self.pass_k),
            seed=self.seed,
            max_batch=self.gen_batch,
        )

    def validate(self) -> EvalConfig:
        if not self.args:
            raise ValueError("give the checkpoint to evaluate: kiln eval CHECKPOINT [TASK ...]")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.num_fewshot < 0:
            raise ValueError(f"num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        for name in ("bpb_window", "bpb_stride", "bpb_max_tokens", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise FileNotFoundError(f"data_dir {self.data_dir} is not a directory")
        self.generation().validate()
        if self.chat not in ("auto", "yes", "no"):
            raise ValueError(f"chat must be auto, yes or no, got {self.chat!r}")
        if self.per_item and self.out_dir is None:
            raise ValueError("per_item needs out_dir (where items/<task>.jsonl go)")
        return self


@dataclass
class EvalSummary(Summary):
    """Scores per task, the centred aggregate, bits per byte per source (results.json: docs/formats.md)."""

    checkpoint: str
    tasks: dict[str, dict[str, float]]
    centred: float
    bits_per_byte: dict[str, dict[str, float]]
    items_per_second: float
    out_dir: str | None
    # Added for leaderboards across checkpoints (kiln.eval.results); the keys above keep their meaning.
    schema_version: int = 1
    checkpoint_info: dict[str, object] = field(default_factory=dict)
    centred_stderr: float = math.nan
    evaluated_at: str = ""
    settings: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        from kiln.eval.results import json_safe

        return json_safe(super().to_json())

    def render(self) -> str:
        lines = []
        if self.tasks:
            lines.append(f"{'task':<16}{'items':>7}{'acc':>16}{'acc_norm':>16}{'random':>8}{'centred':>9}")
            for name, s in self.tasks.items():
                norm = f"{s['acc_norm']:.4f} ±{s['acc_norm_stderr']:.3f}" if "acc_norm" in s else "-"
                ppl = f"  ppl {s['perplexity']:.4g}" if "perplexity" in s else ""
                lines.append(
                    f"{name:<16}{int(s['items']):>7}{s['acc']:>9.4f} ±{s['acc_stderr']:.3f}{norm:>16}"
                    f"{s['random_baseline']:>8.3f}{s['centred']:>9.4f}{ppl}"
                )
            for name, s in self.tasks.items():
                if "exact_match_flexible" in s:  # generative: both of the harness's filters, and pass@k
                    passes = "".join(f", pass@{k[5:-7]} {v:.4f}" for k, v in s.items()
                                     if k.startswith("pass@") and k.endswith("_strict"))  # fmt: skip
                    lines.append(f"{name}: exact match strict {s['exact_match_strict']:.4f}, flexible "
                                 f"{s['exact_match_flexible']:.4f}{passes} (n={int(s['num_samples'])})")  # fmt: skip
            lines.append(
                f"centred (CORE-style) mean over {len(self.tasks)} tasks: {self.centred:.4f} ±{self.centred_stderr:.3f}"
            )
            lines.append(f"{self.items_per_second:,.1f} items/s")
        for source, b in self.bits_per_byte.items():
            lines.append(f"{source}: {b['bits_per_byte']:.4f} bits/byte ({int(b['tokens']):,} tokens, "
                         f"{int(b['bytes']):,} bytes)")  # fmt: skip
        if self.out_dir:
            lines.append(f"results in {self.out_dir}/results.json")
        return "\n".join(lines)


def run(config: EvalConfig) -> EvalSummary:
    import torch

    from kiln.eval.bpb import bits_per_byte, documents
    from kiln.eval.evaluate import evaluate_task
    from kiln.eval.gsm8k import use_chat_template
    from kiln.eval.requests import end_of_text
    from kiln.eval.results import SCHEMA_VERSION, centred_stderr, checkpoint_record, now_utc
    from kiln.eval.tasks import resolve_task
    from kiln.model.checkpoint import load_checkpoint, resolve_checkpoint
    from kiln.tokenizer import ByteTokenizer

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    tasks = [resolve_task(t, config.data_dir, config.limit) for t in config.tasks]  # bad names fail before loading
    model, tokenizer, meta = load_checkpoint(config.checkpoint, device=config.device)
    started = now_utc()
    tokenizer = tokenizer or ByteTokenizer()
    chat = use_chat_template(config.chat, tokenizer, meta)
    out = Path(config.out_dir) if config.out_dir is not None else None

    results, items, seconds = {}, 0, 0.0
    for task in tasks:
        r = evaluate_task(
            model,
            tokenizer,
            task,
            num_fewshot=config.num_fewshot,
            seed=config.seed,
            batch_tokens=config.batch_tokens,
            progress=config.progress,
            generation=config.generation(chat),
        )
        results[task.name] = {
            **r.scores,
            "items": r.items,
            "num_fewshot": r.num_fewshot,
            "seconds": r.seconds,
            "kind": r.kind,
            "source": task.path,
            "centred_stderr": r.scores["acc_stderr"] / (1 - r.scores["random_baseline"]),
        }
        if r.kind == "gen":
            results[task.name]["chat_template"] = chat
        items, seconds = items + r.items, seconds + r.seconds
        if out is not None and config.per_item:
            (out / "items").mkdir(parents=True, exist_ok=True)
            lines = (json.dumps(d) for d in r.decisions)
            (out / "items" / f"{task.name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    bpb = {}
    window = config.bpb_window or model.config.block_size
    for source in config.bpb:
        value, n_tok, n_bytes, n_docs = bits_per_byte(
            model,
            tokenizer,
            documents(source, tokenizer, end_of_text(tokenizer)),
            window=window,
            stride=config.bpb_stride or window,
            max_tokens=config.bpb_max_tokens,
        )
        bpb[str(source)] = {"bits_per_byte": value, "tokens": n_tok, "bytes": n_bytes, "documents": n_docs}

    centred = sum(r["centred"] for r in results.values()) / len(results) if results else math.nan
    summary = EvalSummary(
        checkpoint=str(config.checkpoint),
        tasks=results,
        centred=centred,
        bits_per_byte=bpb,
        items_per_second=items / seconds if seconds else 0.0,
        out_dir=str(out) if out is not None else None,
        schema_version=SCHEMA_VERSION,
        checkpoint_info=checkpoint_record(
            resolve_checkpoint(config.checkpoint), meta, sum(p.numel() for p in model.parameters())
        ),
        centred_stderr=centred_stderr(results),
        evaluated_at=started,
        settings={
            "data_dir": str(config.data_dir) if config.data_dir else None,
            "limit": config.limit,
            "num_fewshot": config.num_fewshot,
            "seed": config.seed,
        },
    )
    if out is not None:
        summary.write(out / "results.json")
        write_resolved_config(config, out, "eval")
    return summary
