"""`kiln import hf DIR --out CHECKPOINT`: a local Hugging Face model as a kiln checkpoint.

GPT-2 and the Llama family (Llama, Mistral, Qwen2, Mixtral) map onto kiln's `GPTConfig` exactly
(`hf_config.from_hf_config`); the result is an ordinary kiln checkpoint that generate, serve, eval and
post-training use like any other. The tokenizer is kept as the model's own `tokenizer.json`, encoded by the
`tokenizers` library (`kiln.tokenizer.hf`), so ids are the model's by construction.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from kiln.interop.export_hf import DTYPES, prepare_out
from kiln.interop.hf_config import from_hf_config
from kiln.interop.hf_files import load_weights
from kiln.stage import Summary, write_resolved_config


@dataclass
class ImportHFConfig:
    """Which Hugging Face directory to import, and where the kiln checkpoint goes."""

    source: str
    """A local Hugging Face model directory (config.json, *.safetensors, tokenizer.json)."""
    out_dir: str
    """The kiln checkpoint directory to write."""
    overwrite: bool = False
    """Replace out_dir if it exists (otherwise an existing directory is an error)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Precision of the checkpoint's weights; auto keeps the source's."""

    def validate(self) -> ImportHFConfig:
        if not self.source:
            raise ValueError("source is required: a local Hugging Face model directory")
        if not self.out_dir:
            raise ValueError("out_dir (--out) is required: the kiln checkpoint directory to write")
        return self


@dataclass
class ImportSummary(Summary):
    out_dir: str
    source: str
    model_type: str
    params: int
    dtype: str

    def render(self) -> str:
        return (
            f"imported {self.source} ({self.model_type}, {self.params:,} parameters, {self.dtype}) -> {self.out_dir}\n"
            f"  try it: kiln generate checkpoint={self.out_dir} prompt='Once upon a time'"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return doc


def _token_name(value: Any) -> str | None:
    """tokenizer_config's bos/eos entry: a string, or an AddedToken-shaped dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def run(config: ImportHFConfig) -> ImportSummary:
    from kiln.model import GPT
    from kiln.model.checkpoint import save_checkpoint
    from kiln.model.hf import from_hf_gpt2, from_hf_llama
    from kiln.tokenizer.hf import HFTokenizer

    config.validate()
    src, out = Path(config.source), Path(config.out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory (give a local Hugging Face model directory)")
    prepare_out(out, config.overwrite)
    hf_config = _read_json(src / "config.json")
    cfg = from_hf_config(hf_config, where=str(src / "config.json"))
    tok_config = _read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src / 'tokenizer.json'} is missing: kiln needs the model's fast tokenizer file")
    tok = HFTokenizer.from_file(
        src / "tokenizer.json",
        bos_token=_token_name(tok_config.get("bos_token")),
        eos_token=_token_name(tok_config.get("eos_token")),
        chat_template=tok_config.get("chat_template") if isinstance(tok_config.get("chat_template"), str) else None,
    )
    hf_state = load_weights(src)
    try:
        if hf_config["model_type"] == "gpt2":
            tied = cfg.tie_embeddings or "lm_head.weight" not in hf_state
            cfg.tie_embeddings = tied
            state = from_hf_gpt2(hf_state, cfg.n_layer, tied=tied)
        else:
            state = from_hf_llama(hf_state, cfg)
    except KeyError as e:
        # The converters strip the "model." / "transformer." prefix: name the tensor as the source would.
        prefix = next((p for p in ("model.", "transformer.") if any(k.startswith(p) for k in hf_state)), "")
        raise ValueError(f"{src}: tensor {prefix}{e.args[0]} is missing from the safetensors files") from None
    source_dtype = next(iter(hf_state.values())).dtype
    dtype = source_dtype if config.dtype == "auto" else DTYPES[config.dtype]
    with torch.device("meta"):
        model = GPT(cfg)
    expected = model.state_dict()
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"{src}: tensor for {k} has shape {tuple(state[k].shape)}, config.json implies {tuple(expected[k].shape)}"
        )
    model = model.to_empty(device="cpu").to(dtype)
    if cfg.tie_embeddings:  # to_empty gives each module its own storage, which unties a shared matrix
        model.lm_head.weight = model.wte.weight
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    meta = {"imported_from": {"path": str(src.resolve()), "model_type": hf_config["model_type"]}}
    save_checkpoint(staging, model, tok, meta)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    write_resolved_config(config, out, "import hf")
    return ImportSummary(
        out_dir=str(out),
        source=str(src),
        model_type=hf_config["model_type"],
        params=model.num_params(),
        dtype=str(dtype).removeprefix("torch."),
    )
