"""`kiln dpo`: the losses against hand computation, the pair formats, precomputed and live references agreeing,
exact resume, and the held-out preference accuracy rising on a learnable preference."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from helpers import CHAT_WORDS, cut_and_resume, run_cli
from kiln.posttrain.conversations import ConversationError
from kiln.posttrain.dpo_loss import preference_loss, sequence_logps
from kiln.posttrain.pairs import read_pairs

FAST = ["device=cpu", "precision=fp32", "threads=1", "batch_size=4", "log_interval=1", "warmup_steps=0"]


def pairs_file(path: Path, n: int = 80, seed: int = 0) -> Path:
    """The user names three words; both replies say them, the chosen one politely ("thank you"), the rejected
    one rudely ("go away"): a preference a small model can learn and carry to prompts it has not seen."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = " ".join(rng.sample(CHAT_WORDS, 3))
        prompt = [{"role": "user", "content": f"Say {words}."}]
        record = {"prompt": prompt, "chosen": f"{words}, thank you.", "rejected": f"{words}, go away."}
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_losses_match_hand_computation():
    pi_c, pi_r = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    ref_c, ref_r = torch.tensor([-11.0, -4.5]), torch.tensor([-11.5, -3.5])
    n_c, n_r = torch.tensor([5.0, 2.0]), torch.tensor([4.0, 3.0])
    beta = 0.1

    def sig(z: float) -> float:
        return 1 / (1 + math.exp(-z))

    t = preference_loss("sigmoid", beta, pi_c, pi_r, ref_c, ref_r, n_c, n_r)
    for i in range(2):
        margin = (pi_c[i] - ref_c[i]) - (pi_r[i] - ref_r[i])
        assert t.loss[i].item() == pytest.approx(-math.log(sig(beta * margin.item())))
        assert t.chosen_rewards[i].item() == pytest.approx(beta * (pi_c[i] - ref_c[i]).item())
    t = preference_loss("ipo", beta, pi_c, pi_r, ref_c, ref_r, n_c, n_r)
    h = ((pi_c - ref_c) / n_c - (pi_r - ref_r) / n_r - 1 / (2 * beta)) ** 2
    assert torch.allclose(t.loss, h)
    t = preference_loss("simpo", 2.0, pi_c, pi_r, None, None, n_c, n_r, gamma=0.5)
    for i in range(2):
        z = 2.0 * (pi_c[i] / n_c[i] - pi_r[i] / n_r[i]).item() - 0.5
        assert t.loss[i].item() == pytest.approx(-math.log(sig(z)))


def test_sequence_logps_sum_the_trained_targets():
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([[1, -1, 3, 4, -1], [-1, -1, -1, 6, 0]])
    total, count = sequence_logps(logits, y)
    logp = logits.log_softmax(-1)
    assert total[0].item() == pytest.approx((logp[0, 0, 1] + logp[0, 2, 3] + logp[0, 3, 4]).item(), rel=1e-6)
    assert count.tolist() == [3, 2]


def test_pair_formats_and_errors(tmp_path):
    hh = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: goodbye!",
          "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: no."}  # fmt: skip
    records = [
        {"prompt": "Q", "chosen": "good", "rejected": "bad"},
        {"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "good"},
         "rejected": {"from": "gpt", "value": "bad"}},
        hh,
    ]  # fmt: skip
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    pairs = read_pairs([path])
    assert [p.prompt for p in pairs[:2]] == [(("user", "Q"),)] * 2
    assert pairs[2].prompt == (("user", "hi"), ("assistant", "hello"), ("user", "bye"))
    assert (pairs[2].chosen, pairs[2].rejected) == ("goodbye!", "no.")
    for bad, needle in (({"prompt": "Q", "chosen": "same", "rejected": "same"}, "identical"),
                        ({"prompt": "Q", "chosen": "x"}, "no 'rejected'")):  # fmt: skip
        path.write_text(json.dumps(records[0]) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
        with pytest.raises(ConversationError, match=needle) as e:
            read_pairs([path])
        assert f"{path}:2" in str(e.value)


def test_precomputed_and_live_references_and_separate_rows_give_the_same_run(base_model, tmp_path):
    """The reference precomputed or live, and the prompt shared by both replies (the default) or run twice."""
    data = pairs_file(tmp_path / "pairs.jsonl", 40)
    runs = {}
    for name, opts in (("precomputed", ["reference=precomputed"]), ("live", ["reference=live"]),
                       ("separate", ["share_prompt=false"])):  # fmt: skip
        out = tmp_path / name
        rc, _, err = run_cli(["dpo", str(base_model), str(data), *FAST, "max_steps=4", "eval_interval=4", *opts,
                              "lr=1e-4", f"out_dir={out}"])  # fmt: skip
        assert rc == 0, err
        runs[name] = metrics(out)
    first = runs["precomputed"][0]
    assert first["train_loss"] == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as the reference
    assert first["rewards/margins"] == pytest.approx(0, abs=1e-6)
    for other in ("live", "separate"):
        for a, b in zip(runs["precomputed"], runs[other], strict=True):
            assert a.keys() == b.keys()
            for key in {"train_loss", "rewards/chosen", "rewards/rejected", "logps/chosen", "val_loss"} & a.keys():
                # fp32 rounding only: the paths batch the forward differently, and a summed log-prob of ~-100
                # carries ~1e-5 of it (a wrong reference or a reply that saw the other moves these by far more).
                assert a.get(key) == pytest.approx(b.get(key), rel=1e-6, abs=1e-5), (other, a["step"], key)


def test_a_resumed_run_logs_what_the_uninterrupted_run_logged(base_model, tmp_path):
    data = pairs_file(tmp_path / "pairs.jsonl", 40)
    common = [str(base_model), str(data), *FAST, "max_steps=6", "eval_interval=3", "checkpoint_interval=3",
              "keep_last=5", "lr=1e-4"]  # fmt: skip
    rc, _, err = run_cli(["dpo", *common, f"out_dir={tmp_path / 'ref'}"])
    assert rc == 0, err
    run = tmp_path / "cut"
    cut_and_resume("dpo", common, run, 6)
    got, want = metrics(run), metrics(tmp_path / "ref")
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for a, b in zip(got, want, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], abs=1e-6)


def test_dpo_raises_held_out_preference_accuracy(base_model, tmp_path):
    data = pairs_file(tmp_path / "pairs.jsonl", 200, seed=1)
    out = tmp_path / "dpo"
    argv = [str(base_model), str(data), *FAST, "batch_size=8", "max_steps=30", "eval_interval=15", "lr=5e-4",
            "beta=0.1", "val_fraction=0.2", f"out_dir={out}"]  # fmt: skip
    rc, text, err = run_cli(["dpo", *argv])
    assert rc == 0, err
    evals = [m for m in metrics(out) if "val_pref_acc" in m]
    assert evals[-1]["val_pref_acc"] >= 0.75 and evals[-1]["val_loss"] < math.log(2)
    assert "preference accuracy" in text


def test_logps_from_selected_positions_equal_the_full_computation(make_model):
    from kiln.posttrain.dpo_loss import selected_logps

    model = make_model()
    x = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(3))
    y = x.roll(-1, dims=1)
    y[:, :4] = -1
    y[1, 9:] = -1
    keep = y != -1
    with torch.no_grad():
        full = sequence_logps(model(x, all_logits=True)[0], y)
        part = selected_logps(model(x, logits_at=keep)[0], y, keep)
    assert torch.allclose(full[0], part[0].to(full[0].dtype), atol=1e-9) and torch.equal(full[1], part[1])


def test_loader_batches_end_at_the_longest_reply_and_score_as_full_windows(make_model):
    """The loader cuts a batch's padding columns (they cost a forward and backward like real tokens, so a batch
    cut at the longest reply made DPO 2x faster): the cut is at the last trained target of any row, and the
    log-probs equal those of the whole-context rows."""
    from kiln.posttrain.dpo_data import PairLoader, PairWindows
    from kiln.posttrain.dpo_loss import selected_logps

    g = torch.Generator().manual_seed(5)
    block, ends = 24, [9, 15, 6, 12]  # each row's trained targets end here
    rows = []
    for end in ends:
        x = torch.zeros(block, dtype=torch.long)
        x[:end] = torch.randint(1, 64, (end,), generator=g)
        y = torch.full((block,), -1, dtype=torch.long)
        y[3 : end - 1] = x[4:end]
        rows.append((x.numpy(), y.numpy()))
    xs, ys = (torch.stack([torch.from_numpy(r[k]) for r in rows]).numpy() for k in (0, 1))
    w = PairWindows(xs, ys, xs[::-1].copy(), ys[::-1].copy())
    model = make_model()
    for extra in (0, 1):
        xc, yc, _, yr, idx = PairLoader(w, batch_size=2, seed=0, extra=extra).next_batch()
        want = max(ends[i] for i in idx.tolist()) - 1  # the longest row's last target, in either reply
        want = max(want, max(ends[len(ends) - 1 - i] for i in idx.tolist()) - 1)
        assert xc.shape[1] == yr.shape[1] == want + extra
        keep = yc != -1
        with torch.no_grad():
            cut = selected_logps(model(xc, logits_at=keep)[0], yc, keep)[0]
            full_keep = torch.from_numpy(ys[idx.numpy()]) != -1
            full = selected_logps(model(torch.from_numpy(xs[idx.numpy()]), logits_at=full_keep)[0],
                                  torch.from_numpy(ys[idx.numpy()]), full_keep)[0]  # fmt: skip
        assert torch.allclose(cut, full, atol=1e-4)


def _reply_rows(g: torch.Generator, prompt: torch.Tensor, lengths: list[int], block: int) -> tuple[torch.Tensor, ...]:
    """(x, y) rows: the prompt, then a reply of each length (trained), then padding."""
    xs, ys = [], []
    for n in lengths:
        x = torch.zeros(block, dtype=torch.long)
        y = torch.full((block,), -1, dtype=torch.long)
        seq = torch.cat([prompt, torch.randint(1, 64, (n,), generator=g)])
        x[: len(seq) - 1] = seq[:-1]
        y[len(prompt) - 1 : len(seq) - 1] = seq[len(prompt) :]
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def test_pair_work_counts_the_tokens_the_forward_runs():
    """tokens/s and MFU count a DPO batch's real tokens (padding out, the prompt once when shared) and its
    targets: checked against the rows `share_prompts` builds and a count by hand of the separate rows."""
    from kiln.posttrain.dpo_data import pair_work
    from kiln.posttrain.shared_prompt import PAD, share_prompts

    g = torch.Generator().manual_seed(11)
    prompt = torch.randint(1, 64, (7,), generator=g)
    xc, yc = _reply_rows(g, prompt, [5, 12, 3], block=24)
    xr, yr = _reply_rows(g, prompt, [9, 2, 14], block=24)
    for extra in (0, 1):
        s = share_prompts(xc, yc, xr, yr, extra=extra)
        assert pair_work(xc, yc, xr, yr, shared=True, extra=extra) == (
            int((s.branches != PAD).sum()),
            7 + 14 - 1 + extra,
            len(s.targets),
        )
    by_hand = sum(7 + n - 1 for n in [5, 12, 3, 9, 2, 14])  # each row: prompt + reply, less the last token
    assert pair_work(xc, yc, xr, yr, shared=False) == (by_hand, 7 + 14 - 1, 5 + 12 + 3 + 9 + 2 + 14)


def test_logged_tokens_are_the_pairs_real_tokens(base_model, tmp_path):
    """`tokens` and MFU in metrics.jsonl count what the steps ran (they counted batch x context before, which put
    a DPO run's tokens/s at several times the truth): the loader's batches replayed give the logged total."""
    from kiln.model.checkpoint import load_checkpoint
    from kiln.posttrain.dpo_data import PairLoader, pair_work, prepare_dpo_data

    data = pairs_file(tmp_path / "pairs.jsonl", 40)
    out = tmp_path / "dpo"
    rc, _, err = run_cli(["dpo", str(base_model), str(data), *FAST, "max_steps=3", "seed=5", "peak_tflops=0.001",
                          f"out_dir={out}"])  # fmt: skip
    assert rc == 0, err
    logged = [m for m in metrics(out) if "tokens" in m]
    model, tok, _ = load_checkpoint(base_model)
    block = model.config.block_size
    d = prepare_dpo_data(tok, [str(data)], block, val_fraction=0.1, overlong="truncate", max_examples=None,
                         where="test")  # fmt: skip
    loader = PairLoader(d.train, 4, seed=5)
    head = 6 * model.lm_head.weight.numel()
    total = 0
    for m in logged:
        tokens, width, targets = pair_work(*loader.next_batch()[:4], shared=True)
        total += tokens
        assert m["tokens"] == total
        flops = tokens * (model.flops_per_token(width) - head) + targets * head
        per_token = m["mfu"] * 1e9 / m["tokens_per_s"]  # MFU x peak (1 GFLOP/s) / tokens per second
        assert per_token == pytest.approx(flops / tokens, rel=2e-3)  # the logged figures are rounded
    assert total < 0.6 * len(logged) * 4 * block  # what the old count (pairs x context) claimed
