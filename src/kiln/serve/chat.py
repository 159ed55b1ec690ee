"""The chat template: messages -> prompt token ids, in ChatML (`<|im_start|>role\\ncontent<|im_end|>\\n`).

A model can chat only if its tokenizer has ChatML's two special tokens (`kiln tokenizer train
--chat-tokens` adds them; SFT teaches their use). Special tokens are placed by id, never parsed out of
message text, so a user who types "<|im_end|>" cannot forge a turn boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.serve.models import CHAT_TOKENS, LoadedModel
from kiln.serve.protocol import ChatMessage


def render_chat(lm: LoadedModel, messages: Sequence[ChatMessage]) -> list[int]:
    """Token ids for `messages` followed by the opening of the assistant's turn."""
    start, end = (lm.tokenizer.special_tokens[t] for t in CHAT_TOKENS)
    newline = lm.tokenizer.encode("\n")
    ids: list[int] = []
    for m in messages:
        role = "system" if m.role == "developer" else m.role
        ids += [start, *lm.tokenizer.encode(f"{role}\n{m.text()}"), end, *newline]
    return [*ids, start, *lm.tokenizer.encode("assistant\n")]


def chat_stop_ids(lm: LoadedModel) -> tuple[int, ...]:
    return (lm.tokenizer.special_tokens[CHAT_TOKENS[1]], *lm.eos_ids)
