"""The training rendering is the server's rendering, and the loss trains exactly the assistant's text and the
<|im_end|> closing it (hypothesis over random conversations)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.posttrain.render import (
    MissingChatTokens,
    render_for_training,
    require_chat_tokens,
    show_mask,
    weigh_words,
)
from kiln.tokenizer import ByteTokenizer, train_bpe
from kiln.tokenizer.chat import render_chat_ids

TOK = train_bpe(
    ["Hello there! How are you? I am fine, thank you. Ünïcödé 日本 🙂 " * 20],
    vocab_size=330,
    special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
)
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def conversations(draw) -> list[tuple[str, str]]:
    turns = [("system", draw(text))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        turns += [("user", draw(text)), ("assistant", draw(text))]
    return turns


@settings(max_examples=150, deadline=None)
@given(conversations())
def test_only_the_assistants_text_and_end_token_are_trained(turns):
    ids, trained = render_for_training(TOK, turns)
    assert len(ids) == len(trained)
    # The prompt up to each assistant turn is exactly what the server would render for that history.
    for k, (role, _) in enumerate(turns):
        if role == "assistant":
            prompt = render_chat_ids(TOK, turns[:k])
            assert ids[: len(prompt)] == prompt
    trained_bytes = b"".join(TOK.id_to_bytes(i) for i, t in zip(ids, trained, strict=True) if t)
    expected = b"".join(t.encode() + b"<|im_end|>" for r, t in turns if r == "assistant")
    assert trained_bytes == expected


def test_show_mask_marks_the_trained_text():
    turns = [("user", "How are you?"), ("assistant", "I am fine.")]
    ids, trained = render_for_training(TOK, turns)
    shown = show_mask(TOK, ids, trained, color=False)
    assert shown == "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n«I am fine.<|im_end|>»\n"
    assert "\x1b[42;30mI am fine.<|im_end|>\x1b[0m" in show_mask(TOK, ids, trained, color=True)


def test_a_tokenizer_without_chat_tokens_is_a_clear_error():
    with pytest.raises(MissingChatTokens, match="kiln chat-tokens"):
        require_chat_tokens(ByteTokenizer(), "runs/base")


def test_keyword_weight_lands_on_the_words_in_the_reply_only():
    turns = [("user", "Use there and fine."), ("assistant", "There you are. I am fine, thank you, there.")]
    ids, trained = render_for_training(TOK, turns)
    assert weigh_words(TOK, ids, trained, ["there", "fine"], 1.0) == [float(t) for t in trained]
    weights = weigh_words(TOK, ids, trained, ["there", "fine"], 5.0)
    assert set(weights) == {0.0, 1.0, 5.0}
    assert all((w > 0) == t for w, t in zip(weights, trained, strict=True))  # nothing untrained gets weight
    runs, run = [], b""
    for i, w in zip(ids, weights, strict=True):
        if w == 5.0:
            run += TOK.id_to_bytes(i)
        elif run:
            runs, run = [*runs, run], b""
    # The three uses in the reply, capitalised or not, with the space BPE folds in; the user's words are not trained.
    assert [r.decode().strip() for r in runs] == ["There", "fine", "there"]
