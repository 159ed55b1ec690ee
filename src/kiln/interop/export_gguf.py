"""`kiln export gguf CHECKPOINT --out FILE.gguf`: a kiln checkpoint as one GGUF file for llama.cpp.

The model goes through the Hugging Face mapping first (`export_hf.to_hf`), then through the same tensor names,
q/k layout and tokenizer metadata that llama.cpp's own converter writes (`gguf_export`), so there is one
architecture mapping to trust, tested against transformers, and the GGUF side is tested against the `gguf`
reader and transformers' GGUF loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.interop.export_hf import to_hf
from kiln.stage import Summary, write_resolved_config


@dataclass
class ExportGGUFConfig:
    """What to export, where, and how the weights are stored."""

    checkpoint: str
    """A kiln checkpoint directory, or a training run (its best checkpoint is used)."""
    out_dir: str
    """The .gguf file to write."""
    overwrite: bool = False
    """Replace the file if it exists (otherwise an existing file is an error)."""
    dtype: Literal["f32", "f16", "bf16", "q8_0"] = "f16"
    """Weight storage: f32, f16, bf16, or q8_0 (8-bit blocks of 32 with one f16 scale; norms stay f32)."""

    def validate(self) -> ExportGGUFConfig:
        if not self.checkpoint:
            raise ValueError("checkpoint is required: the kiln checkpoint (or training run) to export")
        if not self.out_dir:
            raise ValueError("out_dir (--out) is required: the .gguf file to write")
        if not self.out_dir.endswith(".gguf"):
            raise ValueError(f"out_dir must name a .gguf file, got {self.out_dir!r}")
        return self


@dataclass
class ExportGGUFSummary(Summary):
    out_file: str
    source: str
    architecture: str
    dtype: str
    bytes: int

    def render(self) -> str:
        return (
            f"exported {self.source} -> {self.out_file} ({self.architecture}, {self.dtype}, "
            f"{self.bytes / 2**20:,.1f} MiB)\n  run it: llama-cli -m {self.out_file} -p 'Once upon a time'"
        )


def run(config: ExportGGUFConfig) -> ExportGGUFSummary:
    from kiln.interop.gguf_export import write_gguf

    config.validate()
    out = Path(config.out_dir)
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    hf = to_hf(config.checkpoint, "float32")
    write_gguf(
        hf.config,
        hf.state_dict,
        hf.tokenizer_json,
        out,
        dtype=config.dtype,
        tokenizer_config=hf.tokenizer_config,
        generation_config=hf.generation_config,
    )
    write_resolved_config(config, out.parent, "export gguf")
    return ExportGGUFSummary(
        out_file=str(out),
        source=str(hf.source),
        architecture=hf.config["model_type"],
        dtype=config.dtype,
        bytes=out.stat().st_size,
    )
