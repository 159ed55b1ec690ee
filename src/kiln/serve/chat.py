"""The server's chat template: kiln's one ChatML definition (`kiln.tokenizer.chat`) over OpenAI-shaped messages."""

from __future__ import annotations

from collections.abc import Sequence

from kiln.serve.models import LoadedModel
from kiln.serve.protocol import ChatMessage
from kiln.tokenizer.chat import render_chat_ids, stop_token


def render_chat(lm: LoadedModel, messages: Sequence[ChatMessage]) -> list[int]:
    """Token ids for `messages` followed by the opening of the assistant's turn."""
    return render_chat_ids(lm.tokenizer, [(m.role, m.text()) for m in messages])


def chat_stop_ids(lm: LoadedModel) -> tuple[int, ...]:
    end = stop_token(lm.tokenizer)
    return (*(() if end is None else (end,)), *lm.eos_ids)
