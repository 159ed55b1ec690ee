"""Prefix sharing for preference pairs: one row holding the prompt once and both replies after it gives the
log-probs and gradients of the two separate rows, for every position encoding and attention variant."""

from __future__ import annotations

import pytest
import torch

from kiln.posttrain.dpo_loss import owned_logps, selected_logps
from kiln.posttrain.shared_prompt import CHOSEN, PAD, PROMPT, REJECTED, share_prompts

IGNORE = -1


def pair_rows(specs: list[tuple[list[int], int, list[int], list[int]]], width: int) -> tuple[torch.Tensor, ...]:
    """(prompt, shared reply start, chosen rest, rejected rest) -> padded (xc, yc, xr, yr) rows as the DPO loader
    makes them: a sequence's targets are its next tokens, trained from the reply's first token on."""
    out: list[list[torch.Tensor]] = [[], [], [], []]
    for prompt, _, chosen, rejected in specs:
        for k, reply in ((0, chosen), (2, rejected)):
            seq = torch.tensor(prompt + reply)
            x = torch.zeros(width, dtype=torch.long)
            y = torch.full((width,), IGNORE, dtype=torch.long)
            x[: len(seq) - 1] = seq[:-1]
            y[len(prompt) - 1 : len(seq) - 1] = seq[len(prompt) :]
            out[k].append(x)
            out[k + 1].append(y)
    return tuple(torch.stack(c) for c in out)


def test_the_layout_by_hand():
    # Prompt 5 6 7; chosen 8 9; rejected 8 4 3: the replies share their first token, so the shared part is 5 6 7 8.
    xc, yc, xr, yr = pair_rows([([5, 6, 7], 0, [8, 9], [8, 4, 3])], width=6)
    s = share_prompts(xc, yc, xr, yr)
    assert s.x.tolist() == [[5, 6, 7, 8, 4]]
    assert s.branches.tolist() == [[PROMPT, PROMPT, PROMPT, PROMPT, REJECTED]]
    # chosen: 8 from position 2, 9 from 3; rejected: 8 from 2 and 4 from 3 (shared), 3 from the moved 4 at 4.
    assert s.at.tolist() == [2, 3, 2, 3, 4]
    assert s.targets.tolist() == [8, 9, 8, 4, 3]
    assert s.owner.tolist() == [0, 0, 1, 1, 1]
    # Replies that differ from the first token on, the chosen one longer, and a second pair to pad.
    xc, yc, xr, yr = pair_rows([([1, 2], 0, [3, 4, 5], [6]), ([7], 0, [8], [9])], width=5)
    s = share_prompts(xc, yc, xr, yr)
    assert s.x.tolist() == [[1, 2, 3, 4], [7, 0, 0, 0]]
    assert s.branches.tolist() == [[PROMPT, PROMPT, CHOSEN, CHOSEN], [PROMPT, PAD, PAD, PAD]]
    assert s.at.tolist() == [1, 2, 3, 1, 4, 4]
    assert s.owner.tolist() == [0, 0, 0, 2, 1, 3]


def random_pairs(n: int, block: int, vocab: int, seed: int) -> list[tuple[list[int], int, list[int], list[int]]]:
    """Pairs with prompts of 1 to 8 tokens, replies sharing their first 0-3 tokens, rows up to the context long."""
    g = torch.Generator().manual_seed(seed)

    def ids(k: int) -> list[int]:
        return torch.randint(1, vocab, (k,), generator=g).tolist()

    specs = []
    for i in range(n):
        prompt = ids(1 + i % 8)
        start = ids(i % 4)
        room = block + 1 - len(prompt) - len(start)
        c, r = (int(torch.randint(1, room + 1, (), generator=g)) for _ in range(2))
        chosen, rejected = start + ids(c), start + ids(r)
        specs.append((prompt, 0, chosen, rejected))
    return specs


MODELS = {
    "gpt2 (learned positions)": {},
    "llama (rope, rmsnorm, swiglu, grouped kv)": dict(
        pos_encoding="rope", norm="rmsnorm", activation="swiglu", n_kv_head=2, bias=False
    ),
    "alibi": dict(pos_encoding="alibi"),
    "sliding window": dict(pos_encoding="rope", attention_window=5),
    "sinusoidal": dict(pos_encoding="sinusoidal"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_shared_rows_give_the_separate_rows_log_probs_and_gradients(make_model, name):
    model = make_model(**MODELS[name])
    block = model.config.block_size
    xc, yc, xr, yr = pair_rows(random_pairs(6, block, model.config.vocab_size, seed=len(name)), width=block)
    s = share_prompts(xc, yc, xr, yr)
    assert s.x.shape[1] > block  # a shared row may be longer than the context; no position is
    x, y = torch.cat([xc, xr]), torch.cat([yc, yr])
    keep = y != IGNORE

    want, want_n = selected_logps(model(x, logits_at=keep)[0], y, keep)
    want.sum().backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got, got_n = owned_logps(model(s.x, branches=s.branches, logits_at=s.at)[0], s.targets, s.owner, 12)
    got.sum().backward()

    assert torch.equal(got_n, want_n)
    assert torch.allclose(got, want, rtol=0, atol=1e-9), (got - want).abs().max()
    for p, g in zip(model.parameters(), want_grads, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-7, atol=1e-9)


def test_branch_errors(make_model):
    model = make_model(pos_encoding="rope")
    x = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="branches"):
        model(x, branches=torch.zeros_like(x), cache=model.new_cache(1))
    # A row may be longer than the context, a branch may not reach past it (RoPE would not notice by itself).
    block = model.config.block_size
    x = torch.ones(1, block + 4, dtype=torch.long)
    ok = torch.tensor([[0] * 4 + [1] * (block - 4) + [2] * 4])
    assert model(x, branches=ok, all_logits=True)[0].shape[1] == block + 4
    with pytest.raises(ValueError, match=f"position {block + 3}, past block_size {block}"):
        model(x, branches=torch.tensor([[0] * 4 + [1] * block]))


def test_shared_rows_give_a_reward_model_the_separate_rows_rewards(make_model):
    """A reward is read at each reply's closing token (one past its last target, or the window's last position
    when the reply fills it): the same number from the shared row as from the reply's own row."""
    from kiln.posttrain.reward import reward_positions
    from kiln.posttrain.reward_model import RewardModel

    lm = make_model(pos_encoding="rope", norm="rmsnorm", activation="swiglu")
    model = RewardModel(lm.config).to(torch.float64).eval()
    missing, _ = model.load_state_dict(lm.state_dict(), strict=False)
    torch.nn.init.normal_(model.score.weight, generator=torch.Generator().manual_seed(0))
    block = lm.config.block_size
    specs = random_pairs(8, block, lm.config.vocab_size, seed=11)
    specs.append(([3, 4], 0, [5] * (block - 1), [6]))  # the chosen reply fills the window: read at its end
    xc, yc, xr, yr = pair_rows(specs, width=block)
    want = model(torch.cat([xc, xr]), reward_at=torch.cat([reward_positions(yc), reward_positions(yr)]))
    s = share_prompts(xc, yc, xr, yr, extra=1)
    got = model(s.x, branches=s.branches, reward_at=s.reads)
    assert missing == ["score.weight"] and torch.allclose(got, want, rtol=0, atol=1e-9), (got - want).abs().max()
