"""Text drawn as its tokens, as the tiktokenizer web page does: each token on a coloured background, with ids.

Seeing " tokenization" and "202|6" is the fastest way to understand what a vocabulary does to text.
"""

from __future__ import annotations

from kiln.tokenizer.base import Tokenizer

# Background colours (ANSI 256-colour codes) light enough for black text; neighbours always differ.
_COLOURS = (153, 157, 223, 217, 189, 194, 230, 225)


def token_pieces(tok: Tokenizer, text: str) -> list[tuple[int, str]]:
    """(id, text) per token. A token that is part of a UTF-8 character shows as U+FFFD; the full character
    appears on the token that completes it only if decoded together, as every tokenizer viewer does."""
    ids = tok.encode(text)
    return [(i, tok.id_to_bytes(i).decode("utf-8", errors="replace")) for i in ids]


def visible(piece: str) -> str:
    """Whitespace made visible: a space as '·', newline as '↵' (then a real line break), tab as '→'."""
    return piece.replace(" ", "·").replace("\t", "→").replace("\n", "↵\n")


def render(tok: Tokenizer, text: str, colour: bool = True, ids: bool = True) -> str:
    """The coloured token view plus a line of ids and a count."""
    pieces = token_pieces(tok, text)
    parts = []
    for k, (_, piece) in enumerate(pieces):
        shown = visible(piece)
        shown = f"\x1b[30;48;5;{_COLOURS[k % len(_COLOURS)]}m{shown}\x1b[0m" if colour else f"[{shown}]"
        parts.append(shown)
    lines = ["".join(parts)]
    if ids:
        lines.append(" ".join(str(i) for i, _ in pieces))
    n_bytes = len(text.encode("utf-8"))
    ratio = n_bytes / len(pieces) if pieces else 0.0
    lines.append(f"{len(pieces)} tokens, {len(text)} characters, {n_bytes} bytes ({ratio:.2f} bytes/token)")
    return "\n".join(lines)
