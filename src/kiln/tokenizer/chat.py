"""kiln's chat template, defined once: ChatML (`<|im_start|>role\\ncontent<|im_end|>\\n`), as ids and as Jinja.

The server renders conversations with `render_chat_ids`; `kiln export hf` writes `CHATML_JINJA` as the exported
tokenizer's `chat_template`, so transformers' `apply_chat_template` gives the same ids (a test checks it). A
model can chat only if its tokenizer has ChatML's two special tokens (`kiln tokenizer train --chat-tokens` adds
them; SFT teaches their use). Special tokens are placed by id, never parsed out of message text, so a user who
types "<|im_end|>" cannot forge a turn boundary.
"""

from __future__ import annotations

from collections.abc import Iterable

from kiln.tokenizer.base import Tokenizer

CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")

# The same rendering in the Jinja dialect transformers' apply_chat_template runs ("developer" is OpenAI's newer
# name for the system role).
CHATML_JINJA = (
    "{% for message in messages %}"
    "{% set role = 'system' if message['role'] == 'developer' else message['role'] %}"
    "{{ '<|im_start|>' + role + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def has_chat_tokens(tokenizer: Tokenizer) -> bool:
    specials = tokenizer.special_tokens
    return all(t in specials for t in CHAT_TOKENS)


def render_chat_ids(tokenizer: Tokenizer, messages: Iterable[tuple[str, str]]) -> list[int]:
    """Token ids for (role, text) messages followed by the opening of the assistant's turn."""
    start, end = (tokenizer.special_tokens[t] for t in CHAT_TOKENS)
    newline = tokenizer.encode("\n")
    ids: list[int] = []
    for role, text in messages:
        role = "system" if role == "developer" else role
        ids += [start, *tokenizer.encode(f"{role}\n{text}"), end, *newline]
    return [*ids, start, *tokenizer.encode("assistant\n")]
