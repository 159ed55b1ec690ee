"""kiln.interop: kiln checkpoints to and from the formats other engines run.

`kiln export hf` writes a directory that transformers (and so vLLM, TRL, lm-evaluation-harness) loads with no
custom code; `kiln export gguf` writes llama.cpp's file format; `kiln import hf` turns a local Hugging Face model
into a kiln checkpoint. The architecture mapping is in `hf_config`, the tensors in `kiln.model.hf`, the
tokenizer in `hf_tokenizer`, and GGUF's names, q/k layout and vocabulary metadata in the `gguf_*` modules (as
llama.cpp's own converter writes them); nothing is exported that the target would run differently: such variants
are refused by name (`UnsupportedModel`, `GGUFExportError`).
"""
