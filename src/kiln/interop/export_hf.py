"""`kiln export hf CHECKPOINT --out DIR`: a kiln checkpoint as a Hugging Face model directory.

The directory loads with `AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`
and no custom code, so transformers, vLLM, TRL and lm-evaluation-harness run kiln models as they run any other.
`to_hf()` builds the whole model in memory; `kiln export gguf` writes the same thing in llama.cpp's format.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from kiln.interop.hf_config import hf_architecture, to_hf_config
from kiln.interop.hf_files import save_weights
from kiln.interop.hf_tokenizer import bos_eos, tokenizer_config, tokenizer_json
from kiln.stage import Summary, write_resolved_config
from kiln.utils.io import atomic_write_text

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ExportHFConfig:
    """What to export, where, and in which precision."""

    checkpoint: str
    """A kiln checkpoint directory, or a training run (its best checkpoint is used)."""
    out_dir: str
    """The Hugging Face model directory to write."""
    overwrite: bool = False
    """Replace out_dir if it exists (otherwise an existing directory is an error: nothing is overwritten)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Precision of the written weights; auto keeps the checkpoint's own."""
    max_shard_gb: float = 5.0
    """Split the weights into shards of at most this many GB, with an index (as save_pretrained does)."""

    def validate(self) -> ExportHFConfig:
        if not self.checkpoint:
            raise ValueError("checkpoint is required: the kiln checkpoint (or training run) to export")
        if not self.out_dir:
            raise ValueError("out_dir (--out) is required: the directory to write the Hugging Face model into")
        if self.max_shard_gb <= 0:
            raise ValueError(f"max_shard_gb must be > 0, got {self.max_shard_gb}")
        return self


@dataclass
class HFModel:
    """A kiln model in Hugging Face's terms, in memory: every file of an exported directory."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: dict[str, Any]
    tokenizer_config: dict[str, Any]
    generation_config: dict[str, Any]
    source: Path = field(default_factory=Path)


def to_hf(checkpoint: str | Path, dtype: str = "auto") -> HFModel:
    """Load a kiln checkpoint and map it to Hugging Face's config, tensor names and tokenizer files."""
    from kiln.model.checkpoint import load_checkpoint, read_config, resolve_checkpoint
    from kiln.model.hf import to_hf_gpt2, to_hf_llama
    from kiln.model.vocab_padding import strip_vocab_padding

    source = resolve_checkpoint(checkpoint)
    cfg, _ = read_config(source)
    arch = hf_architecture(cfg)  # refuse before loading gigabytes of weights
    model, tok, _ = load_checkpoint(source)
    if tok is None:
        raise ValueError(f"{source} has no tokenizer/ directory: a Hugging Face model needs its tokenizer")
    if tok.vocab_size > cfg.vocab_size:
        raise ValueError(f"{source}: the tokenizer has {tok.vocab_size} ids but the model only {cfg.vocab_size}")
    sd = strip_vocab_padding(model.state_dict(), cfg)  # HF and GGUF get the tokenizer's rows only
    if arch == "gpt2":
        state = to_hf_gpt2(sd, cfg.n_layer, tied=cfg.tie_embeddings)
        if cfg.tie_embeddings:
            del state["lm_head.weight"]  # one copy of a tied matrix, as save_pretrained writes it
    else:
        state = to_hf_llama(sd, cfg)
    target = _stored_dtype(source) if dtype == "auto" else DTYPES[dtype]
    state = {k: v.detach().to(target).contiguous() for k, v in state.items()}
    bos, eos = bos_eos(tok)
    specials = tok.special_tokens
    bos_id, eos_id = specials.get(bos) if bos else None, specials.get(eos) if eos else None
    dtype_name = next(k for k, v in DTYPES.items() if v == target)
    config = to_hf_config(cfg, bos_id=bos_id, eos_id=eos_id, dtype=dtype_name)
    generation = {"bos_token_id": bos_id, "eos_token_id": eos_id, "max_length": cfg.block_size}
    return HFModel(config, state, tokenizer_json(tok), tokenizer_config(tok, cfg.block_size), generation, source)


def _stored_dtype(source: Path) -> torch.dtype:
    """The precision the checkpoint's weights are stored in (the model loads as fp32 whatever it is)."""
    from safetensors import safe_open

    from kiln.model.checkpoint import WEIGHTS

    with safe_open(str(source / WEIGHTS), "pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


@dataclass
class ExportSummary(Summary):
    """Where the model went and what it is there."""

    out_dir: str
    source: str
    architecture: str
    params: int
    dtype: str
    files: list[str]
    bytes: int

    def render(self) -> str:
        return (
            f"exported {self.source} -> {self.out_dir}\n"
            f"  {self.architecture}, {self.params:,} parameters in {self.dtype}, {self.bytes / 2**20:,.1f} MiB "
            f"in {len(self.files)} files\n"
            f"  load it: AutoModelForCausalLM.from_pretrained({self.out_dir!r})"
        )


def prepare_out(path: Path, overwrite: bool) -> None:
    """Refuse an existing target unless overwrite; never leave a half-replaced one (write beside, then swap)."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def run(config: ExportHFConfig) -> ExportSummary:
    config.validate()
    out = Path(config.out_dir)
    prepare_out(out, config.overwrite)
    hf = to_hf(config.checkpoint, config.dtype)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files = save_weights(hf.state_dict, staging, int(config.max_shard_gb * 1e9))
    documents = {
        "config.json": hf.config,
        "generation_config.json": hf.generation_config,
        "tokenizer.json": hf.tokenizer_json,
        "tokenizer_config.json": hf.tokenizer_config,
    }
    for name, doc in documents.items():
        atomic_write_text(staging / name, json.dumps(doc, indent=2, ensure_ascii=False))
    files += list(documents)
    # Swap in the finished directory: a killed export leaves out.partial, never a half-written model at out.
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    write_resolved_config(config, out, "export hf")
    return ExportSummary(
        out_dir=str(out),
        source=str(hf.source),
        architecture=hf.config["architectures"][0],
        params=sum(t.numel() for t in hf.state_dict.values()),
        dtype=hf.config["dtype"],
        files=sorted(files),
        bytes=sum((out / f).stat().st_size for f in files),
    )
