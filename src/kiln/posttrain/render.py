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


def word_forms(tok: Tokenizer, words: Sequence[str]) -> set[tuple[int, ...]]:
    """The token sequences a word can take in running text: as written, lower-case and capitalised, with and
    without the leading space that byte-level BPE folds into a word."""
    forms = set()
    for w in words:
        for form in {w, w.lower(), w.capitalize()}:
            for text in (form, " " + form):
                forms.add(tuple(tok.encode(text)))
    return {f for f in forms if f}


def weigh_words(
    tok: Tokenizer, ids: Sequence[int], trained: Sequence[bool], words: Sequence[str], weight: float
) -> list[float]:
    """Per id, its weight in the loss: 0 untrained, 1 for a trained token, `weight` for a trained token inside an
    occurrence of one of `words`.

    Why: in an instruction like "use the words A, B and C", three words of a 150-token reply carry the instruction
    and the rest is ordinary story. A small model lowers the mean loss by learning the story and never learns to
    copy the words from the prompt (docs/benchmarks.md, post-training effects); weighting those few tokens makes
    the copy worth learning. The words are found by their own token sequences in the rendered ids (not by
    re-encoding pieces of the text), so the ids stay exactly what the server renders.
    """
    out = [1.0 if t else 0.0 for t in trained]
    if weight == 1.0 or not words:
        return out
    forms = word_forms(tok, words)
    lengths = sorted({len(f) for f in forms})
    for i in range(len(ids)):
        for n in lengths:
            if tuple(ids[i : i + n]) in forms:
                for j in range(i, i + n):
                    if trained[j]:
                        out[j] = weight
    return out


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
