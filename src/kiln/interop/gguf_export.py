"""Write an HF-format model (config.json + state dict + tokenizer.json, in memory) as one GGUF file for llama.cpp.

The file is written by the `gguf` package, llama.cpp's own writer, so the container format is theirs; what is
decided here is what llama.cpp's convert_hf_to_gguf.py decides: the architecture and its keys
(`gguf_arch`), the tensor names and layouts (`gguf_tensors`), the tokenizer metadata (`gguf_vocab`) and each
tensor's type. Why not run convert_hf_to_gguf.py itself: it is not in the `gguf` package (it lives in the
llama.cpp repository with its `conversion/` package), it reads a directory rather than a model in memory, and it
names a BPE pre-tokenizer only by hashing a known vocabulary's ids, which refuses every newly trained kiln
tokenizer. The input is transformers' format so that this module needs nothing of kiln's model code.

Tensor types follow the converter: 1-D tensors, norms, biases, position embeddings and the MoE router stay
F32 (llama.cpp's kernels expect that); every other weight takes `dtype`; a q8_0 tensor whose rows are not a
multiple of 32 falls back to F16, as the converter's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
from torch import Tensor

from kiln.interop.gguf_arch import gguf_arch
from kiln.interop.gguf_errors import GGUFExportError
from kiln.interop.gguf_tensors import gguf_name
from kiln.interop.gguf_vocab import vocab_from_tokenizer_json
from kiln.utils.io import atomic_write

GGUFDtype = Literal["f32", "f16", "bf16", "q8_0"]
Q = gguf.GGMLQuantizationType
DTYPES: dict[str, tuple[gguf.LlamaFileType, gguf.GGMLQuantizationType]] = {
    "f32": (gguf.LlamaFileType.ALL_F32, Q.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, Q.F16),
    "bf16": (gguf.LlamaFileType.MOSTLY_BF16, Q.BF16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, Q.Q8_0),
}
_ALWAYS_F32 = (gguf_name(gguf.MODEL_TENSOR.POS_EMBD), ".ffn_gate_inp.weight")


def tensor_type(name: str, data: np.ndarray, wanted: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    """The type llama.cpp's converter gives this tensor when the file's type is `wanted`."""
    if data.ndim <= 1 or name.endswith(("_norm.weight", *_ALWAYS_F32)) or not name.endswith(".weight"):
        return Q.F32
    return wanted


def _encode(
    name: str, tensor: Tensor, wanted: gguf.GGMLQuantizationType
) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    data = tensor.detach().to("cpu").float().contiguous().numpy()
    qtype = tensor_type(name, data, wanted)
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.QuantError:  # q8_0 needs rows that are a multiple of its 32-value block
        return gguf.quants.quantize(data, Q.F16), Q.F16


def write_gguf(
    hf_config: dict[str, Any],
    state_dict: Mapping[str, Tensor],
    tokenizer_json: dict[str, Any],
    path: str | Path,
    *,
    dtype: GGUFDtype = "f16",
    tokenizer_config: dict[str, Any] | None = None,
    generation_config: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Write the model as a GGUF at `path` (atomically: a reader sees the old file or the whole new one).

    `hf_config` is the config.json dict (GPT-2, Llama, Mistral or Mixtral), `state_dict` uses transformers'
    tensor names, `tokenizer_json` is a byte-level BPE tokenizer.json dict. Bad input raises GGUFExportError
    (a ValueError) naming the key, tensor or field."""
    if dtype not in DTYPES:
        raise GGUFExportError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    file_type, wanted = DTYPES[dtype]
    arch = gguf_arch(hf_config)
    vocab = vocab_from_tokenizer_json(
        tokenizer_json,
        arch.vocab_size,
        tokenizer_config=tokenizer_config,
        hf_config=hf_config,
        generation_config=generation_config,
    )
    path = Path(path)

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(tmp, arch.name)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or hf_config.get("_name_or_path") or "kiln")
        arch.add_hparams(writer)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        vocab.add_to(writer)
        _add_sampling(writer, generation_config or {})
        for tensor_name, tensor in arch.tensors(state_dict):
            data, qtype = _encode(tensor_name, tensor, wanted)
            writer.add_tensor(tensor_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write(path, write)
    return path


def _add_sampling(writer: gguf.GGUFWriter, generation_config: dict[str, Any]) -> None:
    """generation_config.json's sampling defaults as llama.cpp's `general.sampling.*` (read by its CLI tools)."""
    if not generation_config.get("do_sample"):
        return
    for key, add in (
        ("temperature", writer.add_sampling_temp),
        ("top_k", writer.add_sampling_top_k),
        ("top_p", writer.add_sampling_top_p),
    ):
        if generation_config.get(key) is not None:
            add(generation_config[key])
