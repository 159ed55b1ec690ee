"""Bits per byte: equal to kiln train's val_bpb on the same windows; the sliding window scores each token once."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kiln.eval.bpb import bits_per_byte, documents, windows
from kiln.train import distributed as D
from kiln.train.data import bundled_text, bytes_per_token, text_to_shards, token_byte_lengths
from kiln.train.evaluate import evaluate
from kiln.train.loader import val_batches


def test_tiny_shakespeare_bpb_equals_the_trainer_s_val_bpb_on_the_same_windows(make_model, tmp_path) -> None:
    shards = text_to_shards(bundled_text(), tmp_path / "data", val_fraction=0.1)
    tok = shards.tokenizer
    model = make_model(vocab_size=tok.vocab_size)  # block_size 32, float64
    block, batch, n = model.config.block_size, 4, 6
    batches = list(val_batches(shards.val, batch, block, n))
    # What the trainer logs as val_bpb: mean val loss / ln 2 / bytes per target token.
    loss = evaluate(model, batches, D.Dist(), torch.device("cpu"), "fp32", fsdp=False)
    model.eval()
    trainer_bpb = loss / math.log(2) / bytes_per_token(batches, token_byte_lengths(tok))
    ours, n_tok, _, _ = bits_per_byte(
        model, tok, documents(shards.val[0], tok, None), window=block, stride=block, max_tokens=batch * n * block + 1
    )
    assert n_tok == batch * n * block
    # The trainer's cross-entropy runs in float32 (GPT.forward casts logits), ours in float64: equal to ~1e-8.
    assert ours == pytest.approx(trainer_bpb, rel=1e-7)
    assert 4 < ours < 8  # a random model over ~65 characters: about log2(65) = 6 bits per 1-byte character


@pytest.mark.parametrize(("n", "window", "stride"), [(2, 4, 4), (10, 4, 4), (11, 4, 1), (50, 8, 3), (9, 8, 8)])
def test_the_sliding_window_scores_every_token_but_the_first_once(n, window, stride) -> None:
    seen = []
    for start, end, first in windows(n, window, stride):
        assert end - start <= window and first >= start + 1
        if start > 0:
            assert first - start - 1 >= window - stride or end == n - 1  # at least window - stride tokens of context
        seen += range(first, end + 1)
    assert seen == list(range(1, n))


def test_a_smaller_stride_gives_more_context_and_scores_the_same_tokens(make_model) -> None:
    from kiln.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    model = make_model(vocab_size=256)
    ids = np.asarray(tok.encode(bundled_text()[:500]), dtype=np.int64)
    full = bits_per_byte(model, tok, iter([ids]), window=32, stride=32)
    slid = bits_per_byte(model, tok, iter([ids]), window=32, stride=8)
    assert full[1:] == slid[1:] == (499, 499, 1)
    assert full[0] != slid[0]


def test_documents_from_text_jsonl_and_parquet_agree(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kiln.tokenizer import get_tokenizer

    tok = get_tokenizer("byte")
    texts = ["First document.", "Second, longer document — with a dash."]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pq.write_table(pa.table({"text": texts}), tmp_path / "d.parquet")
    (tmp_path / "d.txt").write_text(texts[1])
    a = [d.tolist() for d in documents(tmp_path / "d.jsonl", tok, 0)]
    b = [d.tolist() for d in documents(tmp_path / "d.parquet", tok, 0)]
    c = [d.tolist() for d in documents(tmp_path / "d.txt", tok, 0)]
    assert a == b == [[0, *tok.encode(t)] for t in texts] and c == a[1:]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": 1}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: "):
        list(documents(tmp_path / "bad.jsonl", tok, None))
