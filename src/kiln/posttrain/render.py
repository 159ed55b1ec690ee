"""Conversations -> token ids and the mask of tokens the loss trains, with kiln's one chat template.

The ids are exactly what the server renders for the same turns (`kiln.tokenizer.chat.render_chat_ids`, ChatML or
Llama 3 by the tokenizer's special tokens), so the model is trained on the sequences it will be prompted with.
Trained: the assistant's text and the token that closes it (<|im_end|>, <|eot_id|>: so the model learns to stop);
not trained: the system and user turns, the role headers and what follows a turn, which the template supplies.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.tokenizer import Tokenizer
from kiln.tokenizer.chat import CHAT_TOKENS, Special, conversation_start, has_chat_tokens, template_for


class MissingChatTokens(ValueError):
    """The tokenizer has no <|im_start|>/<|im_end|>: the model cannot be taught the chat template."""


def require_chat_tokens(tok: Tokenizer, where: str) -> None:
    if not has_chat_tokens(tok):
        raise MissingChatTokens(
            f"{where}: the tokenizer lacks the chat tokens {' and '.join(CHAT_TOKENS)}; add them with "
            f"`kiln chat-tokens {where} --out DIR` (new embedding rows start at the mean embedding), then fine-tune DIR"
        )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def render_for_training(tok: Tokenizer, turns: Sequence[tuple[str, str]]) -> tuple[list[int], list[bool]]:
    """(ids, trained): ids of the whole conversation and, per id, whether the loss trains on predicting it."""
    template = template_for(tok)
    if template is None:
        raise MissingChatTokens(f"the tokenizer lacks the chat tokens {' and '.join(CHAT_TOKENS)}")
    specials = tok.special_tokens
    ids = conversation_start(tok, template)
    trained = [False] * len(ids)
    for role, text in turns:
        role = "system" if role == "developer" else role
        for i, piece in enumerate(template.turn(role, text)):
            assistant = role == "assistant"
            if isinstance(piece, Special):
                ids.append(specials[piece.name])
                trained.append(assistant and piece.name == template.end)  # the end of the reply: learn to stop
                continue
            body = tok.encode(piece)  # as the server encodes it: the header text and the message in one piece
            n = len(body)
            if assistant and i == template.content_index:
                # The text starts where the encoding stops agreeing with the header alone (in practice right
                # after "\n", which every split pattern keeps as its own piece).
                n = _common_prefix(body, tok.encode(piece[: len(piece) - len(text)]))
            ids += body
            trained += [False] * n + [assistant and i == template.content_index] * (len(body) - n)
    return ids, trained


def show_mask(tok: Tokenizer, ids: Sequence[int], trained: Sequence[bool], color: bool) -> str:
    """The rendered conversation with trained tokens highlighted (green in a terminal, «...» otherwise)."""
    pieces: list[str] = []
    run: list[int] = []
    state = None

    def flush() -> None:
        if not run:
            return
        text = tok.decode(list(run))
        if state:
            text = f"\x1b[42;30m{text}\x1b[0m" if color else f"«{text}»"
        pieces.append(text)

    for i, flag in zip(ids, trained, strict=True):
        if flag != state:
            flush()
            run, state = [], flag
        run.append(i)
    flush()
    return "".join(pieces)
