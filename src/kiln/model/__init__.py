"""kiln.model: the decoder-only transformer (`GPT`), its config and named presets."""

from kiln.model.config import GPTConfig
from kiln.model.gpt import GPT
from kiln.model.kv_cache import KVCache
from kiln.model.presets import PRESETS, build, preset, preset_names

__all__ = ["GPT", "PRESETS", "GPTConfig", "KVCache", "build", "preset", "preset_names"]
