"""Conversations -> token ids and the mask of tokens the loss trains, with kiln's one chat template.

The ids are exactly what the server renders for the same turns (`kiln.tokenizer.chat.render_chat_ids`), so the
model is trained on the sequences it will be prompted with. Trained: the assistant's text and the <|im_end|> that
closes it (so the model learns to stop); not trained: the system and user turns, the role headers and the
newline after each turn, which the template supplies at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiln.tokenizer import Tokenizer
from kiln.tokenizer.chat import CHAT_TOKENS, has_chat_tokens


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
    start, end = (tok.special_tokens[t] for t in CHAT_TOKENS)
    newline = tok.encode("\n")
    header = tok.encode("assistant\n")
    ids: list[int] = []
    trained: list[bool] = []
    for role, text in turns:
        body = tok.encode(f"{role}\n{text}")  # as the server encodes a turn: header and text in one piece
        if role == "assistant":
            # The text starts where the encoding stops agreeing with the header alone (in practice right after
            # "\n", which every split pattern keeps as its own piece).
            n = _common_prefix(body, header)
            mask = [False] * n + [True] * (len(body) - n) + [True]  # + <|im_end|>
        else:
            mask = [False] * (len(body) + 1)
        ids += [start, *body, end, *newline]
        trained += [False, *mask, *([False] * len(newline))]
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
