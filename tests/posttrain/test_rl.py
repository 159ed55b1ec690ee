"""`kiln rl` (GRPO): the advantage and clipping arithmetic against hand-worked groups, rewards that check replies
(a raising one scores 0 and is counted), and a run that logs its rewards and resumes to the same log."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from test_dpo import metrics

from helpers import CHAT_WORDS, cut_and_resume, run_cli
from kiln.posttrain.grpo import group_advantages, grpo_loss
from kiln.posttrain.rl_rewards import (
    SumReward,
    get_reward,
    number_reward,
    repetition_reward,
    safe_rewards,
    words_reward,
)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(r, 4, eps=0.0)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std(unbiased=True).item()  # 0.5774
    assert adv[:4].tolist() == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std])
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # a group with equal rewards teaches nothing
    assert group_advantages(r, 4, scale=False)[:4].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_clipped_surrogate_by_hand():
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.5, 1.0, 0.9], [0.5, 1.1, 1.0]]))  # ratios
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -2.0])
    loss, stats = grpo_loss(logp, old, adv, mask, clip=0.2)
    # Row 0 (A=+1): min(r, clip(r)) = 1.2, 1.0, 0.9. Row 1 (A=-2): min(-2r, -2 clip(r)) = -2*0.8, -2*1.1.
    row0 = -(1.2 + 1.0 + 0.9) / 3
    row1 = -(-1.6 - 2.2) / 2
    assert loss.item() == pytest.approx((row0 + row1) / 2)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 5)  # 1.5 and 0.5 lie outside [0.8, 1.2]
    # DAPO's token-level mean: every token of the batch weighs the same (5 tokens); Dr. GRPO's: sums over 2 x 4.
    sums = -(1.2 + 1.0 + 0.9) - (-1.6 - 2.2)
    assert grpo_loss(logp, old, adv, mask, clip=0.2, loss_type="bnpo")[0].item() == pytest.approx(sums / 5)
    assert grpo_loss(logp, old, adv, mask, 0.2, loss_type="dr_grpo", max_tokens=4)[0].item() == pytest.approx(sums / 8)
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logp, old, adv, mask, loss_type="ppo")
    kl_loss, kl_stats = grpo_loss(logp, old, adv, mask, clip=0.2, ref_logp=torch.zeros(2, 3), kl_beta=0.1)
    assert kl_stats["kl"].item() > 0 and kl_loss.item() > loss.item()


def test_log_probs_are_the_tempered_sampling_policys_as_trl_scores_them():
    """Completions drawn at temperature T come from softmax(logits / T); the loss scores them under that policy
    (TRL divides the logits by the sampling temperature too), so the gradient of a token's log-prob is
    (onehot - softmax(z / T)) / T, worked by hand here, not the untempered (onehot - softmax(z))."""
    from types import SimpleNamespace

    from kiln.posttrain.packing import IGNORE
    from kiln.posttrain.rl import RLTrainer, _token_logps

    torch.manual_seed(0)
    z = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[2, 6, IGNORE], [0, 3, 1]])  # two rows, the first with one masked position
    mask = y != IGNORE
    t = 0.7
    lp = _token_logps(z, y, mask, t)
    want = torch.distributions.Categorical(logits=z.detach() / t).log_prob(y[mask])
    assert lp[mask].tolist() == pytest.approx(want.tolist(), abs=1e-6)  # scored in fp32
    assert lp[0, 2].item() == 0.0
    lp[1, 1].backward()  # the 4th scored position (logits row 3): row 1, column 1, target 3
    grad = (torch.nn.functional.one_hot(torch.tensor(3), 7) - torch.softmax(z.detach()[3] / t, -1)) / t
    assert z.grad[3].tolist() == pytest.approx(grad.tolist(), abs=1e-6)  # scored in fp32
    assert z.grad[[0, 1, 2, 4]].abs().max().item() == 0.0

    # The trainer's own scoring applies its config's temperature to the model's logits.
    model = torch.nn.Linear(3, 7, bias=False).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64)

    def fwd(inputs: torch.Tensor, logits_at: torch.Tensor) -> tuple[torch.Tensor, None]:
        return model(inputs[logits_at]), None

    trainer = SimpleNamespace(fwd=fwd, precision="fp32", device=torch.device("cpu"), cfg=SimpleNamespace(temperature=t))
    got = RLTrainer._logps(trainer, x, y)
    ref = torch.log_softmax(model(x).detach() / t, -1).gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert got[mask].tolist() == pytest.approx(ref[mask].tolist(), abs=1e-6)  # scored in fp32


def test_rewards_check_replies():
    assert words_reward({"words": ["apple", "river", "stone"]}, "An apple by the river.") == pytest.approx(2 / 3)
    all_words = get_reward("all_words")
    assert all_words({"words": ["apple", "river", "stone"]}, "An apple by the river.") == 0.0
    assert all_words({"words": ["apple", "river", "stone"]}, "A Stone, an apple, a river.") == 1.0
    assert number_reward({"answer": "so 48+24 = 72\n#### 72"}, "The answer is 72.") == 1.0
    assert number_reward({"answer": "#### 1,000"}, "It costs 1000 dollars") == 1.0
    assert number_reward({"answer": "#### 72"}, "71") == 0.0

    def flaky(record, reply):
        if "boom" in reply:
            raise RuntimeError("a bug in the reward")
        return 1.0

    assert safe_rewards(flaky, [{}, {}, {}], ["ok", "boom", "ok"]) == ([1.0, 0.0, 1.0], 1)


def test_repetition_penalty_and_summed_rewards_by_hand():
    # "a b c a b c": 3-grams abc, bca, cab, abc -> 3 distinct of 4, penalty -(1 - 3/4).
    assert repetition_reward({}, "A b c a B c") == pytest.approx(-0.25)
    assert repetition_reward({}, "no repeats at all here") == 0.0
    assert repetition_reward({}, "too short") == 0.0
    record, reply = {"words": ["walk", "monkey", "tree"]}, "the walk was the walk was the walk"  # 2/3 of 3-grams repeat
    both = get_reward("words+0.5*repetition")
    expected = 1 / 3 + 0.5 * -(1 - 3 / 6)
    assert both(record, reply) == pytest.approx(expected)
    assert both.batch([record, record], [reply, "a monkey in a tree"]) == pytest.approx([expected, 2 / 3])
    assert get_reward("2*words")(record, reply) == pytest.approx(2 / 3)
    for bad, message in (("words+x*repetition", "not a number"), ("words+colour", "unknown reward")):
        with pytest.raises(ValueError, match=message):
            get_reward(bad)

    def flaky(record, reply):
        if "boom" in reply:
            raise RuntimeError("a bug in the reward")
        return 1.0

    # A term that raises for one reply costs that reply its whole reward (0), counted; the others are summed.
    summed = SumReward([(1.0, words_reward), (1.0, flaky)])
    assert safe_rewards(summed, [record, record], ["a tree", "boom tree"]) == ([1 / 3 + 1.0, 0.0], 1)


def prompts_file(path: Path, n: int = 24) -> Path:
    rows = []
    for i in range(n):
        words = [CHAT_WORDS[(i + k) % len(CHAT_WORDS)] for k in range(3)]
        rows.append({"messages": [{"role": "user", "content": f"Say {', '.join(words)}."}], "words": words})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_a_grpo_run_logs_rewards_and_resumes_to_the_same_log(base_model, tmp_path):
    data = prompts_file(tmp_path / "prompts.jsonl")
    common = [str(base_model), str(data), "device=cpu", "precision=fp32", "threads=1", "batch_size=2", "group=4",
              "max_new_tokens=12", "max_steps=4", "eval_interval=2", "checkpoint_interval=2", "keep_last=5",
              "log_interval=1", "lr=1e-4", "val_fraction=0.2"]  # fmt: skip
    rc, text, err = run_cli(["rl", *common, f"out_dir={tmp_path / 'ref'}"])
    assert rc == 0, err
    rows = metrics(tmp_path / "ref")
    assert [m["step"] for m in rows] == [1, 2, 3, 4]
    assert all(0 <= m["reward/mean"] <= 1 and m["completion_length"] > 0 for m in rows)
    assert "val_reward" in rows[1] and "held-out reward" in text
    assert all(math.isfinite(m["train_loss"]) for m in rows)
    # tokens count each update's real tokens: its 8 completions and their prompts, less one a row (the inputs)
    from kiln.model.checkpoint import load_checkpoint
    from kiln.posttrain.rl_data import read_prompts
    from kiln.tokenizer.chat import render_chat_ids

    tok = load_checkpoint(base_model)[1]
    sizes = [len(render_chat_ids(tok, p["prompt_turns"])) - 1 for p in read_prompts([str(data)], None)]
    for before, m in zip([0] + [r["tokens"] for r in rows], rows, strict=False):
        prompts = m["tokens"] - before - round(8 * m["completion_length"])
        assert 8 * min(sizes) <= prompts <= 8 * max(sizes), (m["step"], prompts, sizes)

    run = tmp_path / "cut"
    cut_and_resume("rl", common, run, 4)
    got = metrics(run)
    assert [m["step"] for m in got] == [1, 2, 3, 4]
    for a, b in zip(got, rows, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["reward/mean"] == pytest.approx(b["reward/mean"])


def test_a_prompt_must_end_with_the_user(base_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "system", "content": "x"}]}) + "\n", encoding="utf-8")
    rc, _, err = run_cli(["rl", str(base_model), str(bad), f"out_dir={tmp_path / 'o'}"])
    assert rc == 2 and "bad.jsonl:1" in err
    rc, _, err = run_cli(["rl", str(base_model), str(bad), f"out_dir={tmp_path / 'o'}", "loss_type=ppo"])
    assert rc == 2 and "loss_type must be grpo, bnpo or dr_grpo" in err and "Traceback" not in err


def test_a_reward_that_raises_scores_zero_is_counted_and_the_run_goes_on(base_model, tmp_path):
    """Half the prompts lack the `words` the reward reads: their samples score 0 and are counted, and the run
    finishes its steps. The reward is a sum (words + the repetition penalty) and the loss DAPO's token mean: a
    failing term fails its reply alone, and the other options run end to end."""
    rows = [json.loads(line) for line in prompts_file(tmp_path / "p.jsonl", 16).read_text().splitlines()]
    for row in rows[::2]:
        del row["words"]
    data = tmp_path / "half.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "run"
    rc, _, err = run_cli(["rl", str(base_model), str(data), "device=cpu", "precision=fp32", "threads=1",
                          "batch_size=4", "group=2", "max_new_tokens=4", "max_steps=3", "log_interval=1",
                          "eval_interval=100", "val_fraction=0.1", "reward=words+repetition", "loss_type=bnpo",
                          f"out_dir={out}"])  # fmt: skip
    assert rc == 0, err
    got = metrics(out)
    assert [m["step"] for m in got] == [1, 2, 3]
    # Each step's 4 prompts x 2 samples: the failures are the samples of prompts without words, counted exactly.
    assert sum(m["reward_failures"] for m in got) > 0
    assert all(m["reward_failures"] in (0, 2, 4, 6, 8) for m in got)


def common_words_prompts(path: Path) -> Path:
    """24 prompts that each ask for eight words the English-pretrained base model writes some of the time; the reward
    is the share used, so a group's samples score differently whatever the fixture's training run drew (one required
    word a prompt left 1 success in 16 samples, and some builds of the fixture none)."""
    common = ["the", "and", "of", "a", "to", "in", "is", "it"]
    rows = [{"messages": [{"role": "user", "content": f"Write about {common[i % 8]}."}], "words": common}
            for i in range(24)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_updates_per_batch_reuses_the_samples_with_the_sampling_policy_as_pi_old(base_model, tmp_path):
    """GRPO's mu = 2: steps 1-2 and 3-4 each train on one sampled batch. A sampling step's ratio is exactly 1 (its
    loss is 0 by construction and nothing is clipped); the step after it reuses the same completions (the same
    rewards and lengths are logged) under a policy one update on, so its ratio moves and clipping acts."""
    data = common_words_prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / "mu"
    rc, _, err = run_cli([
        "rl", str(base_model), str(data), "device=cpu", "precision=fp32", "threads=1", "batch_size=4", "group=4",
        "max_new_tokens=16", "max_steps=4", "eval_interval=100", "log_interval=1", "lr=3e-2", "val_fraction=0.2",
        "updates_per_batch=2", "temperature=1.0", f"out_dir={out}",
    ])  # fmt: skip
    assert rc == 0, err
    rows = metrics(out)
    assert [m["step"] for m in rows] == [1, 2, 3, 4]
    for first, again in (rows[0:2], rows[2:4]):
        assert first["clip_fraction"] == 0 and first["train_loss"] == pytest.approx(0, abs=1e-6)
        assert again["reward/mean"] == first["reward/mean"]
        assert again["completion_length"] == first["completion_length"]
    assert rows[0]["reward/std"] > 0, "the test needs groups whose rewards differ"
    assert rows[1]["clip_fraction"] > 0 and abs(rows[1]["train_loss"]) > 1e-6
    # Step 3 samples a new batch: its ratio is back to exactly 1 (nothing clipped, loss 0, asserted above), where
    # reusing step 1's samples two updates on would clip as step 2 does. (Its logged rewards may equal step 1's: a
    # few coarse values from 16 short samples.)
    assert rows[2]["grad_norm"] != rows[0]["grad_norm"]


def test_a_reward_model_scores_a_steps_replies_together_and_trains_a_policy(base_model, tmp_path):
    """`reward=model:DIR`: the replies of a step are scored per prompt in one batch, the same numbers as one reply
    at a time; a reply the batch cannot score (a record without its prompt) alone gets 0; `kiln rl` runs on it."""
    from test_dpo import pairs_file

    from kiln.model.checkpoint import load_checkpoint

    rm_dir = tmp_path / "rm"
    rc, _, err = run_cli(["reward", str(base_model), str(pairs_file(tmp_path / "pairs.jsonl", 40)), "device=cpu",
                          "precision=fp32", "threads=1", "batch_size=4", "max_steps=3", "warmup_steps=0", "lr=1e-2",
                          f"out_dir={rm_dir}"])  # fmt: skip
    assert rc == 0, err
    _, tok, _ = load_checkpoint(base_model)
    fn = get_reward(f"model:{rm_dir}", tok)
    a, b = [("user", "Say lantern meadow harbor.")], [("user", "Say apple.")]
    records = [{"prompt_turns": t} for t in (a, b, a, a, b)]
    replies = ["lantern meadow harbor, thank you.", "apple, go away.", "no.", "harbor", "apple apple apple"]
    batched, failed = safe_rewards(fn, records, replies)
    alone = [fn(r, reply) for r, reply in zip(records, replies, strict=True)]
    assert failed == 0 and len(set(alone)) == len(alone)  # a trained head: the replies get different rewards
    assert batched == pytest.approx(alone, rel=1e-5, abs=1e-6)
    assert safe_rewards(fn, [*records, {}], [*replies, "x"]) == (pytest.approx([*alone, 0.0], rel=1e-5, abs=1e-6), 1)

    out = tmp_path / "rl"
    rc, _, err = run_cli(["rl", str(base_model), str(prompts_file(tmp_path / "prompts.jsonl", 16)),
                          f"reward=model:{rm_dir}", "device=cpu", "precision=fp32", "threads=1", "batch_size=2",
                          "group=3", "max_new_tokens=6", "max_steps=2", "log_interval=1", "eval_interval=100",
                          f"out_dir={out}"])  # fmt: skip
    assert rc == 0, err
    got = metrics(out)
    assert [m["step"] for m in got] == [1, 2] and all(m["reward/mean"] != 0 for m in got)


def rl_trainer(base_model: Path, tmp_path: Path, *settings: str):  # type: ignore[no-untyped-def]
    """An RLTrainer built in this process (its sampler and weights open to the test): common_words_prompts, fp32,
    4 prompts x 4 completions a step at a high learning rate, so one step moves the policy visibly."""
    from kiln.posttrain.rl import RLTrainer, load_rl_config
    from kiln.train import distributed as D

    data = common_words_prompts(tmp_path / "prompts.jsonl")
    cfg = load_rl_config(None, [
        f"checkpoint={base_model}", f'inputs=["{data}"]', "device=cpu", "precision=fp32", "threads=1", "batch_size=4",
        "group=4", "max_new_tokens=16", "max_steps=2", "lr=3e-2", "val_fraction=0.2", f"out_dir={tmp_path / 'r'}",
        *settings,
    ])  # fmt: skip
    info, device = D.init_distributed("cpu")
    return RLTrainer(cfg.validate(), info, device, log=lambda _: None)


def test_bf16_sampling_samples_a_copy_with_the_current_weights(base_model, tmp_path):
    """sample_dtype=bfloat16 samples from a bf16 copy of the policy; after an optimizer step the copy holds the
    step's weights (each rounded to bf16, none left from the checkpoint) and decodes as a fresh bf16 cast of the
    policy does, so the CPU decode path's packed weights were renewed too. auto keeps fp32 under an fp32 update."""
    from kiln.generate import SamplingParams, generate_batch

    trainer = rl_trainer(base_model, tmp_path)
    try:
        assert trainer.sampler() is trainer.raw  # auto under an fp32 update
        trainer.cfg.sample_dtype = "bfloat16"
        start = {k: v.clone() for k, v in trainer.raw.state_dict().items()}
        bf16 = trainer.sampler()
        assert bf16 is not trainer.raw and next(bf16.parameters()).dtype == torch.bfloat16
        prompts = [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        generate_batch(bf16, prompts, greedy)  # the decode path packs the first weights
        trainer.train_step()  # samples through the copy, then moves the policy
        assert trainer.sampler() is bf16
        now = trainer.raw.state_dict()
        assert any(not torch.equal(start[k], now[k]) for k in now), "the step should move the policy"
        for k, v in bf16.state_dict().items():
            assert torch.equal(v, now[k].to(torch.bfloat16)), k
        fresh = copy.deepcopy(trainer.raw).to(torch.bfloat16).eval()
        got = [c.tokens for c in generate_batch(bf16, prompts, greedy)]
        assert got == [c.tokens for c in generate_batch(fresh, prompts, greedy)]
    finally:
        trainer.metrics.close()


def test_auto_precision_times_an_update_as_wide_as_a_real_one(base_model, tmp_path, monkeypatch):
    """On a CPU with bf16 in hardware but no AMX (made to look like one here, so this runs on any CPU),
    precision=auto times an update of every prompt's group: rows batch_size x group, as wide as the longest
    prompt plus max_new_tokens; the times are in the run's first line."""
    from kiln.train import precision as precision_mod

    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: True)
    trainer = rl_trainer(base_model, tmp_path, "precision=auto")
    try:
        longest = max(map(len, trainer._prompt_ids(trainer.shards.train[:64])))
        rows, width = trainer.probe_shape()
        assert (rows, width) == (4 * 4, min(trainer.block, longest + 16))
        assert f"(auto: a {rows} x {width} step took " in trainer.describe()
        assert trainer.precision in ("fp32", "bf16")
    finally:
        trainer.metrics.close()


def test_top_k_shapes_the_sampled_groups_and_bad_values_are_named(base_model, tmp_path):
    """top_k reaches the sampler: at temperature 1 with top_k=1 every completion of a group is the greedy one,
    where the same seed without it draws different completions; a bad top_p is a one-line config error."""
    from kiln.generate import SamplingParams, generate_batch
    from kiln.posttrain.rl import RLTrainer, load_rl_config
    from kiln.tokenizer.chat import reply_stops
    from kiln.train import distributed as D

    data = common_words_prompts(tmp_path / "prompts.jsonl")
    cfg = load_rl_config(None, [
        f"checkpoint={base_model}", f'inputs=["{data}"]', "device=cpu", "precision=fp32", "threads=1", "batch_size=2",
        "group=4", "max_new_tokens=12", "max_steps=1", "val_fraction=0.2", f"out_dir={tmp_path / 'r'}",
    ])  # fmt: skip
    info, device = D.init_distributed("cpu")
    trainer = RLTrainer(cfg.validate(), info, device, log=lambda _: None)
    try:
        prompts = trainer._prompt_ids(trainer.shards.train[:2])
        free = [c.tokens for c in trainer.sample(prompts, 4, 1.0, seed=3)]
        assert len({tuple(t) for t in free[:4]}) > 1, "the test needs a group that differs when sampled freely"
        trainer.cfg.top_k = 1
        top1 = [c.tokens for c in trainer.sample(prompts, 4, 1.0, seed=3)]
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12, stop_token_ids=reply_stops(trainer.tokenizer))
        want = [c.tokens for c in generate_batch(trainer.raw, prompts, greedy)]
        assert top1 == [want[0]] * 4 + [want[1]] * 4
    finally:
        trainer.metrics.close()

    rc, _, err = run_cli(["rl", str(base_model), str(data), f"out_dir={tmp_path / 'o'}", "top_p=0"])
    assert rc == 2 and "top_p must be in (0, 1], got 0" in err and "Traceback" not in err
