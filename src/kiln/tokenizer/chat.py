"""kiln's chat templates, each defined once: ChatML (kiln's own, `<|im_start|>role\\ncontent<|im_end|>\\n`) and
Llama 3's (`<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>`), as ids and as Jinja.

A tokenizer's special tokens say which template its model speaks (`template_for`): kiln-trained vocabularies
reserve ChatML's; imported Llama 3 models bring their own. The server renders chat requests with
`render_chat_ids`, `kiln sft` trains on the same ids (`kiln.posttrain.render`), and `kiln export hf` writes the
template's Jinja as the tokenizer's `chat_template`, so transformers' `apply_chat_template` gives the same ids
(tested). Text between special tokens is encoded in one piece, as transformers encodes a rendered template.
Special tokens are placed by id, never parsed out of message text, so a user who types "<|im_end|>" cannot forge
a turn boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kiln.tokenizer.base import Tokenizer

CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
LLAMA3_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")

# The same renderings in the Jinja dialect transformers' apply_chat_template runs ("developer" is OpenAI's newer
# name for the system role).
CHATML_JINJA = (
    "{% for message in messages %}"
    "{% set role = 'system' if message['role'] == 'developer' else message['role'] %}"
    "{{ '<|im_start|>' + role + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_JINJA = (
    "{% if bos_token == '<|begin_of_text|>' %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% set role = 'system' if message['role'] == 'developer' else message['role'] %}"
    "{{ '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Special:
    name: str


Piece = str | Special


@dataclass(frozen=True)
class ChatTemplate:
    """A chat format as pieces: special tokens, and text encoded in one piece between them."""

    name: str
    tokens: tuple[str, ...]
    """The special tokens it needs."""
    end: str
    """The token that ends a turn (generation stops at it)."""
    jinja: str
    bos: str | None = None
    """A token that starts the conversation, if the tokenizer has it (Llama 3's <|begin_of_text|>)."""

    def turn(self, role: str, text: str) -> list[Piece]:
        if self.name == "llama3":
            return [
                Special("<|start_header_id|>"),
                role,
                Special("<|end_header_id|>"),
                f"\n\n{text}",
                Special(self.end),
            ]
        return [Special("<|im_start|>"), f"{role}\n{text}", Special(self.end), "\n"]

    @property
    def content_index(self) -> int:
        """Which piece of `turn` holds the message text (after its header text)."""
        return 3 if self.name == "llama3" else 1

    def header(self, role: str) -> list[Piece]:
        """The pieces that open a turn, up to where its text starts (the generation prompt, for the assistant)."""
        if self.name == "llama3":
            return [Special("<|start_header_id|>"), role, Special("<|end_header_id|>"), "\n\n"]
        return [Special("<|im_start|>"), f"{role}\n"]


CHATML = ChatTemplate("chatml", CHAT_TOKENS, "<|im_end|>", CHATML_JINJA)
LLAMA3 = ChatTemplate("llama3", LLAMA3_TOKENS, "<|eot_id|>", LLAMA3_JINJA, bos="<|begin_of_text|>")


def template_for(tokenizer: Tokenizer) -> ChatTemplate | None:
    """The template a tokenizer's special tokens support: Llama 3's if it has them, else ChatML's, else None."""
    specials = tokenizer.special_tokens
    for template in (LLAMA3, CHATML):
        if all(t in specials for t in template.tokens):
            return template
    return None


def has_chat_tokens(tokenizer: Tokenizer) -> bool:
    return template_for(tokenizer) is not None


def encode_pieces(tokenizer: Tokenizer, pieces: Iterable[Piece]) -> list[int]:
    specials = tokenizer.special_tokens
    ids: list[int] = []
    for p in pieces:
        ids += [specials[p.name]] if isinstance(p, Special) else tokenizer.encode(p)
    return ids


def conversation_start(tokenizer: Tokenizer, template: ChatTemplate) -> list[int]:
    bos = tokenizer.special_tokens.get(template.bos) if template.bos else None
    return [] if bos is None else [bos]


def render_chat_ids(tokenizer: Tokenizer, messages: Iterable[tuple[str, str]]) -> list[int]:
    """Token ids for (role, text) messages followed by the opening of the assistant's turn."""
    template = template_for(tokenizer)
    if template is None:
        raise ValueError(f"the tokenizer has no chat template's tokens ({' and '.join(CHAT_TOKENS)})")
    ids = conversation_start(tokenizer, template)
    # Each piece of text is encoded alone; two text pieces in a row (ChatML's "\n" after a turn and the next
    # turn's header never touch: a special token separates them) would otherwise have to be joined first.
    for role, text in messages:
        role = "system" if role == "developer" else role
        ids += encode_pieces(tokenizer, template.turn(role, text))
    return ids + encode_pieces(tokenizer, template.header("assistant"))


def stop_token(tokenizer: Tokenizer) -> int | None:
    """The id that ends an assistant turn, if the tokenizer speaks a chat template."""
    template = template_for(tokenizer)
    return None if template is None else tokenizer.special_tokens[template.end]


def reply_stops(tokenizer: Tokenizer) -> tuple[int, ...]:
    """The ids that end a sampled assistant reply: the turn's end and the end of text, those the tokenizer has (a
    fine-tuned small model sometimes closes a story with <|endoftext|>, as its pretraining documents ended)."""
    ends = (stop_token(tokenizer), getattr(tokenizer, "eot_id", None))
    return tuple(dict.fromkeys(t for t in ends if t is not None))
