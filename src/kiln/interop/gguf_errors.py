"""The one error GGUF export raises for bad input: a ValueError, so the CLI prints it as one line (exit 2)."""

from __future__ import annotations


class GGUFExportError(ValueError):
    """The model, tokenizer or options cannot be written as a GGUF that llama.cpp reads the same way.

    The message names the config key, tensor or tokenizer field at fault."""
