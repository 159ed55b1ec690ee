"""TokenLoader and val_batches: real contiguous windows, epochs, exact resume, and DDP sharding."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from kiln.tokenize.shards import write_shard
from kiln.train.loader import TokenLoader, val_batches

T = 8
VOCAB = 1000
LENGTHS = [101, 57, 5, 41]  # windows per shard: 12, 7, 0 (too short), 5 -> 24
BASES = [0, 200, 400, 600]  # shard i holds BASES[i], BASES[i]+1, ...: a window's first token names it


@pytest.fixture
def shards(tmp_path):
    return [
        write_shard(tmp_path / f"shard_{i:03d}.bin", (base + np.arange(n)) % VOCAB, VOCAB)
        for i, (base, n) in enumerate(zip(BASES, LENGTHS, strict=True))
    ]


def all_window_starts() -> list[int]:
    return [base + k * T for base, n in zip(BASES, LENGTHS, strict=True) for k in range((n - 1) // T)]


def take(loader: TokenLoader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [loader.next_batch() for _ in range(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_shapes_dtype_and_windows_are_real_runs(shards):
    loader = TokenLoader(shards, batch_size=4, block_size=T, seed=1)
    valid = set(all_window_starts())
    for x, y in take(loader, 10):
        assert x.shape == y.shape == (4, T)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
            w = [*row_x, row_y[-1]]
            assert w[0] in valid
            assert w == list(range(w[0], w[0] + T + 1))  # contiguous, within one shard


def test_deterministic_per_seed_and_seeds_differ(shards):
    assert_same(take(TokenLoader(shards, 3, T, seed=5), 6), take(TokenLoader(shards, 3, T, seed=5), 6))
    a = torch.cat([x for x, _ in take(TokenLoader(shards, 3, T, seed=5), 6)])
    b = torch.cat([x for x, _ in take(TokenLoader(shards, 3, T, seed=6), 6)])
    assert not torch.equal(a, b)


def test_one_epoch_covers_every_window_exactly_once(shards):
    loader = TokenLoader(shards, batch_size=4, block_size=T, seed=3)
    seen = Counter(x[:, 0].tolist()[i] for x, _ in take(loader, 6) for i in range(4))
    assert seen == Counter(all_window_starts())
    assert loader.state_dict()["epoch"] == 0
    # the next epoch is a different order of the same windows
    second = take(loader, 6)
    assert loader.state_dict()["epoch"] == 1
    assert Counter(x[:, 0].tolist()[i] for x, _ in second for i in range(4)) == Counter(all_window_starts())


@pytest.mark.parametrize("batch_size", [5, 3])  # 5: 4 leftover windows dropped each epoch; 3: exact fit
def test_resume_matches_uninterrupted_across_epochs(shards, batch_size):
    reference = take(TokenLoader(shards, batch_size, T, seed=11), 17)
    first = TokenLoader(shards, batch_size, T, seed=11)
    take(first, 7)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = TokenLoader(shards, batch_size, T, seed=0)  # the seed comes from the state
    resumed.load_state_dict(state)
    assert_same(take(resumed, 10), reference[7:17])
    assert resumed.state_dict()["epoch"] >= 2  # 24 // batch_size batches per epoch: crossed boundaries


def test_state_dict_contents(shards):
    loader = TokenLoader(shards, 2, T, seed=4)
    take(loader, 3)
    state = loader.state_dict()
    assert state == {
        "epoch": 0,
        "cursor": 6,
        "seed": 4,
        "world_size": 1,
        "rank": 0,
        "block_size": T,
        "batch_size": 2,
        "shards": [[p.name, n] for p, n in zip(shards, LENGTHS, strict=True)],
    }


def test_ddp_ranks_are_disjoint_and_union_is_single_process_batch(shards):
    B = 2
    r0 = TokenLoader(shards, B, T, seed=9, rank=0, world_size=2)
    r1 = TokenLoader(shards, B, T, seed=9, rank=1, world_size=2)
    single = TokenLoader(shards, 2 * B, T, seed=9)
    for _ in range(8):  # 24 windows / 4 per step: crosses an epoch boundary
        (x0, y0), (x1, y1), (xs, ys) = r0.next_batch(), r1.next_batch(), single.next_batch()
        assert not set(x0[:, 0].tolist()) & set(x1[:, 0].tolist())
        assert torch.equal(torch.cat([x0, x1]), xs) and torch.equal(torch.cat([y0, y1]), ys)
    # every rank resumes from rank 0's state
    state = json.loads(json.dumps(r0.state_dict()))
    again = TokenLoader(shards, B, T, rank=1, world_size=2)
    again.load_state_dict(state)
    assert_same([again.next_batch()], [r1.next_batch()])


def test_incompatible_state_is_rejected(shards, tmp_path):
    state = TokenLoader(shards, 2, T).state_dict()
    with pytest.raises(ValueError, match="block_size"):
        TokenLoader(shards, 2, T // 2).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        TokenLoader(shards, 3, T).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        TokenLoader(shards, 2, T, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="shards differ"):
        TokenLoader(shards[:2], 2, T).load_state_dict(state)
    with pytest.raises(ValueError, match="shards differ"):
        TokenLoader(list(reversed(shards)), 2, T).load_state_dict(state)
    other = write_shard(tmp_path / shards[0].name.replace(".bin", "x.bin"), np.arange(101) % VOCAB, VOCAB)
    with pytest.raises(ValueError, match="shards differ"):
        TokenLoader([other, *shards[1:]], 2, T).load_state_dict(state)
    with pytest.raises(ValueError, match="missing cursor"):
        TokenLoader(shards, 2, T).load_state_dict({k: v for k, v in state.items() if k != "cursor"})
    with pytest.raises(ValueError, match="cursor"):
        TokenLoader(shards, 2, T).load_state_dict({**state, "cursor": 10_000})


def test_shards_too_short(tmp_path):
    paths = [write_shard(tmp_path / f"s{i}.bin", np.arange(T), VOCAB) for i in range(3)]  # T tokens < T+1
    with pytest.raises(ValueError, match="long enough"):
        TokenLoader(paths, 1, T)
    with pytest.raises(ValueError, match="long enough"):
        val_batches(paths, 1, T, 1)
    one = [write_shard(tmp_path / "one.bin", np.arange(T + 1), VOCAB)]
    x, y = TokenLoader(one, 1, T).next_batch()
    assert x.tolist() == [list(range(T))] and y.tolist() == [list(range(1, T + 1))]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TokenLoader(one, 2, T)


def test_bad_arguments(shards):
    with pytest.raises(ValueError):
        TokenLoader(shards, 0, T)
    with pytest.raises(ValueError):
        TokenLoader(shards, 1, 0)
    with pytest.raises(ValueError):
        TokenLoader(shards, 1, T, rank=2, world_size=2)
    with pytest.raises(ValueError):
        TokenLoader([], 1, T)


def test_val_batches_are_the_first_windows_in_order_every_call(shards):
    a = list(val_batches(shards, 4, T, 5))
    b = list(val_batches(shards, 4, T, 5))
    assert_same(a, b)
    assert len(a) == 5
    starts = [s for x, _ in a for s in x[:, 0].tolist()]
    assert starts == all_window_starts()[:20]
    for x, y in a:
        assert x.shape == y.shape == (4, T) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="only 24 windows"):
        val_batches(shards, 5, T, 5)
