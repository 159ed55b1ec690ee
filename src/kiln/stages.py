"""The table of kiln's stages: command name -> config class and `run` function (see `kiln.stage` for the contract).

Entries name their modules by import path, so `kiln --help` (and a typo'd command) answer without importing torch
or any stage's dependencies; `Spec.config_class()` and `Spec.run_function()` import on demand. The CLI
(`kiln.cli`) and the quickstart read this one table, so a stage added here is a command, with `--help`, everywhere.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Spec:
    """One command: what it is called, what it configures and runs, and how bare arguments map to fields."""

    name: str
    """The command after `kiln`, e.g. "clean" or "tokenizer train"."""
    help: str
    """One line for `kiln --help`."""
    config: str
    """"module:Class" of the config dataclass."""
    run: str
    """"module:function" taking the config and returning a `kiln.stage.Summary`."""
    positional: str | None = None
    """The field that bare command-line arguments fill (a list field collects them all)."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Option names kept from earlier command lines -> field names, e.g. {"out": "out_dir"}."""
    load: str | None = None
    """"module:function(path, overrides) -> config" for a stage whose defaults depend on what is asked for (train:
    the preset sets the model's shape, `resume` reads a run's own config); None = `kiln.config.load_config`."""

    def config_class(self) -> type:
        return _resolve(self.config)

    def run_function(self) -> Any:
        return _resolve(self.run)

    def loader(self) -> Any:
        return _resolve(self.load) if self.load else None


_OUT = {"out": "out_dir"}

STAGES: dict[str, Spec] = {
    s.name: s
    for s in [
        Spec("crawl", "fetch web pages politely into WARC files (resumable)",
             "kiln.acquire.crawl:CrawlConfig", "kiln.acquire.crawl:run", "seeds", _OUT),
        Spec("ingest", "read WARC/WET/ARC files (gzip or plain) into WARC files for kiln clean",
             "kiln.acquire.ingest:IngestConfig", "kiln.acquire.ingest:run", "inputs", _OUT),
        Spec("clean", "WARC/HTML or text -> filtered, deduplicated Parquet (FineWeb-style)",
             "kiln.clean.config:CleanConfig", "kiln.clean.runner:run", "inputs", _OUT),
        Spec("tokenizer train", "learn a tokenizer's vocabulary from a corpus",
             "kiln.tokenize.train_tokenizer:TokenizerTrainConfig", "kiln.tokenize.train_tokenizer:run", "inputs",
             _OUT),
        Spec("tokenizer encode", "print the token ids of text (arguments or stdin)",
             "kiln.tokenizer.tools:EncodeConfig", "kiln.tokenizer.tools:encode", "text"),
        Spec("tokenizer decode", "print the text of token ids (arguments or stdin)",
             "kiln.tokenizer.tools:DecodeConfig", "kiln.tokenizer.tools:decode", "ids"),
        Spec("tokenizer show", "text split into coloured tokens with ids (several --tokenizer to compare)",
             "kiln.tokenizer.tools:ShowConfig", "kiln.tokenizer.tools:show", "text"),
        Spec("tokenizer export-hf", "write a BPE tokenizer as a Hugging Face tokenizer.json",
             "kiln.tokenizer.tools:ExportConfig", "kiln.tokenizer.tools:export", None),
        Spec("tokenize", "turn a corpus into train/val token shards for kiln train",
             "kiln.tokenize.tokenize_corpus:TokenizeConfig", "kiln.tokenize.tokenize_corpus:run", "inputs", _OUT),
        Spec("model", "parameter counts, FLOPs and memory of model presets (on the meta device)",
             "kiln.model.report:ModelReportConfig", "kiln.model.report:run", "names"),
        Spec("train", "pretrain a model (default: char-level Tiny Shakespeare on CPU)",
             "kiln.train.config:TrainConfig", "kiln.eval.in_training:run_train",
             load="kiln.train.config:load_train_config"),
        Spec("generate", "sample text from a checkpoint or a randomly initialised preset",
             "kiln.generate.run:GenerateConfig", "kiln.generate.run:run"),
        Spec("eval", "score a checkpoint on downstream tasks (ARC, PIQA, LAMBADA, ...) and bits per byte",
             "kiln.eval.run:EvalConfig", "kiln.eval.run:run", "args", _OUT),
        Spec("serve", "an OpenAI-compatible API and the web playground for the checkpoints in a directory",
             "kiln.serve.config:ServeConfig", "kiln.serve.run:run"),
        Spec("sft", "supervised fine-tuning on chat conversations (loss on the assistant's tokens only)",
             "kiln.posttrain.sft_config:SFTConfig", "kiln.posttrain.sft:run", "inputs",
             load="kiln.posttrain.sft_config:load_sft_config"),
        Spec("dpo", "preference tuning on chosen/rejected pairs: DPO, IPO or SimPO, reference log-probs precomputed",
             "kiln.posttrain.dpo_config:DPOConfig", "kiln.posttrain.dpo:run", "inputs",
             load="kiln.posttrain.dpo_config:load_dpo_config"),
        Spec("reward", "a Bradley-Terry reward model (a scalar head on a checkpoint) trained on preference pairs",
             "kiln.posttrain.reward:RewardConfig", "kiln.posttrain.reward:run", "inputs",
             load="kiln.posttrain.reward:load_reward_config"),
        Spec("rl", "GRPO with verifiable rewards (words, numbers, a reward model), sampling with kiln's own engine",
             "kiln.posttrain.rl:RLConfig", "kiln.posttrain.rl:run", "inputs", load="kiln.posttrain.rl:load_rl_config"),
        Spec("chat-tokens", "add the chat template's tokens to a checkpoint's tokenizer (new rows = mean embedding)",
             "kiln.posttrain.chat_tokens:ChatTokensConfig", "kiln.posttrain.chat_tokens:run", "checkpoint", _OUT),
        Spec("export hf", "a checkpoint as a Hugging Face model directory (transformers, vLLM, TRL load it)",
             "kiln.interop.export_hf:ExportHFConfig", "kiln.interop.export_hf:run", "checkpoint", _OUT),
        Spec("export gguf", "a checkpoint as one GGUF file for llama.cpp (f32, f16, bf16 or q8_0)",
             "kiln.interop.export_gguf:ExportGGUFConfig", "kiln.interop.export_gguf:run", "checkpoint", _OUT),
        Spec("import hf", "a local Hugging Face model (GPT-2, Llama, Mistral, Qwen2, Mixtral) as a kiln checkpoint",
             "kiln.interop.import_hf:ImportHFConfig", "kiln.interop.import_hf:run", "source", _OUT),
        Spec("plan", "compute-optimal size, memory per GPU, steps, time and cost for a budget or a model",
             "kiln.plan.config:PlanConfig", "kiln.plan.run:run", aliases={"out": "out_dir"}),
        Spec("sweep", "an IsoFLOP grid of small kiln train runs, then a fit of your own scaling law",
             "kiln.plan.sweep_config:SweepConfig", "kiln.plan.sweep:run", aliases={"out": "out_dir"}),
        Spec("quickstart", "every stage for real on bundled data (crawl ... train), then the playground",
             "kiln.quickstart:QuickstartConfig", "kiln.quickstart:run", aliases={"train": "train_overrides"}),
    ]
}  # fmt: skip
