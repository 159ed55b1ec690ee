"""`kiln sft` end to end on a real base model: the assistant loss falls, held-out metrics are logged, a run killed
with SIGKILL resumes to the same loss curve, the result chats through the OpenAI API, and bad setups are clear
errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import CHAT_WORDS, run_cli
from kiln.model.checkpoint import latest_checkpoint, load_checkpoint

FAST = ["device=cpu", "precision=fp32", "threads=1", "batch_size=8", "log_interval=1", "lr=3e-3", "warmup_steps=3"]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sft_lowers_the_assistant_loss_and_logs_held_out_metrics(base_model, chat_file, tmp_path):
    run = tmp_path / "sft"
    rc, out, err = run_cli(["sft", str(base_model), str(chat_file), *FAST, "max_steps=40", "eval_interval=10",
                            f"out_dir={run}"])  # fmt: skip
    assert rc == 0, out + err
    evals = [m for m in metrics(run) if "val_token_acc" in m]
    assert [m["step"] for m in evals] == [10, 20, 30, 40]
    assert evals[-1]["val_loss"] < 0.95 * evals[0]["val_loss"]
    assert evals[-1]["val_token_acc"] > evals[0]["val_token_acc"]
    assert (run / "kiln-sft.toml").exists() and "held-out assistant loss" in out
    _model, tok, meta = load_checkpoint(run)
    assert "<|im_start|>" in tok.special_tokens and meta["train"]["checkpoint"] == str(base_model)


def test_sigkill_then_resume_reproduces_the_loss_curve(base_model, chat_file, tmp_path):
    args = [str(base_model), str(chat_file), *FAST, "max_steps=30", "eval_interval=10", "checkpoint_interval=5",
            "model.n_layer=2"]  # fmt: skip
    args = [a for a in args if not a.startswith("model.")]
    ref = tmp_path / "ref"
    rc, _, err = run_cli(["sft", *args, f"out_dir={ref}"])
    assert rc == 0, err

    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiln", "sft", *args, f"out_dir={run}", "threads=1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "metrics.jsonl").exists() and latest_checkpoint(run) is not None:
            steps = [m["step"] for m in metrics(run)]
            if steps and steps[-1] >= 7:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    killed_early = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rc, _, err = run_cli(["sft", f"resume={run}"])
    assert rc == 0, err
    got, want = metrics(run), metrics(ref)
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for a, b in zip(got, want, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6), a["step"]
        if "val_loss" in b:
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
    assert killed_early or pytest.skip("the run finished before it could be killed (machine too fast)")
    a, _, _ = load_checkpoint(run)
    b, _, _ = load_checkpoint(ref)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_show_mask_prints_the_first_conversation(base_model, chat_file):
    rc, out, err = run_cli(["sft", str(base_model), str(chat_file), "--show-mask"])
    assert rc == 0, err
    assert "chat.jsonl:1" in out and "<|im_start|>assistant\n«" in out and "<|im_end|>»" in out


def test_clear_errors(base_model, chat_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    rc, _, err = run_cli(["sft", str(base_model), str(bad), f"out_dir={tmp_path / 'a'}"])
    assert rc == 2 and f"{bad}:1" in err and "no assistant turn" in err and "Traceback" not in err
    rc, _, err = run_cli(["sft", str(chat_file), f"out_dir={tmp_path / 'b'}"])
    assert rc == 2 and "checkpoint is required" in err
    rc, _, err = run_cli(["sft", str(base_model), str(chat_file), "keyword_weight=0", f"out_dir={tmp_path / 'c'}"])
    assert rc == 2 and "keyword_weight must be > 0" in err and "Traceback" not in err


def test_keyword_weight_trains_on_a_weighted_mean_of_the_token_losses(base_model, tmp_path):
    """The loss `kiln sft keyword_weight=4` logs for its first batch, against the same batch scored by hand: each
    assistant token's cross-entropy, the tokens of the record's `words` counted 4 times."""
    import random

    import torch.nn.functional as F

    from kiln.posttrain.packing import IGNORE
    from kiln.posttrain.sft_data import SFTLoader, prepare_sft_data

    rng = random.Random(0)
    data = tmp_path / "words.jsonl"
    records = []
    for _ in range(60):
        a, b = rng.sample(CHAT_WORDS, 2)
        records.append({"messages": [{"role": "user", "content": f"Use {a} and {b}."},
                                     {"role": "assistant", "content": f"I like the {a}, and the {b} is here."}],
                        "words": [a, b]})  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    run = tmp_path / "run"
    rc, out, err = run_cli(["sft", str(base_model), str(data), *FAST, "max_steps=1", "keyword_weight=4", "seed=3",
                            f"out_dir={run}"])  # fmt: skip
    assert rc == 0, out + err
    logged = next(m["train_loss"] for m in metrics(run) if "train_loss" in m)

    model, tok, _ = load_checkpoint(base_model)
    prepared = prepare_sft_data(tok, [str(data)], model.config.block_size, val_fraction=0.05, packing=True,
                                overlong="truncate", max_examples=None, where="test", keyword_weight=4.0)  # fmt: skip
    assert prepared.weighted
    x, y, s, w = SFTLoader(prepared.train, 8, seed=3).next_batch()
    with torch.no_grad():
        logits, _ = model(x, segments=s, all_logits=True)
    keep = y != IGNORE
    ce = F.cross_entropy(logits[keep].double(), y[keep], reduction="none")
    weights = w[keep].double()
    assert set(weights.tolist()) == {1.0, 4.0}
    want = float((ce * weights).sum() / weights.sum())
    assert abs(logged - want) < 1e-4 and abs(logged - float(ce.mean())) > 1e-3


def test_mfu_counts_the_lm_head_on_the_trained_tokens_only(base_model, chat_file, tmp_path):
    """SFT runs the LM head on the assistant's tokens only, so its logged MFU counts the head's 6·V·d FLOPs for
    that share of the tokens (counting them for every token put the quickstart's SFT at an MFU of 1.9)."""
    from kiln.posttrain.sft_data import prepare_sft_data

    run = tmp_path / "run"
    rc, out, err = run_cli(["sft", str(base_model), str(chat_file), *FAST, "max_steps=3", "peak_tflops=0.001",
                            f"out_dir={run}"])  # fmt: skip
    assert rc == 0, out + err
    logged = [m for m in metrics(run) if m.get("mfu")][-1]
    per_token = logged["mfu"] * 1e9 / logged["tokens_per_s"]  # MFU x peak (1 GFLOP/s) / tokens per second

    model, tok, _ = load_checkpoint(base_model)
    block = model.config.block_size
    st = prepare_sft_data(tok, [str(chat_file)], block, val_fraction=0.05, packing=True, overlong="truncate",
                          max_examples=None, where="test").train_stats  # fmt: skip
    share = st.trained / (st.rows * block)
    head = 6 * model.lm_head.weight.numel()
    want = model.flops_per_token(block) - head * (1 - share)
    assert 0 < share < 0.9
    assert abs(per_token - want) < 1e-3 * want  # the logged figures are rounded
    assert abs(per_token - model.flops_per_token(block)) > 0.05 * head * (1 - share)


def test_a_small_set_keeps_an_item_on_each_side_of_the_held_out_split() -> None:
    """Three items can all hash to one side (an arena export did, all held out, and kiln dpo refused it)."""
    from kiln.posttrain.sft_data import split_held_out

    items = ["a", "b", "c"]
    assert split_held_out(items, str, 1.0) == (["a"], ["b", "c"])  # all would be held out: one trains
    assert split_held_out(items, str, 0.0) == (["a", "b"], ["c"])  # none would be: one is held out
    assert split_held_out(["a"], str, 1.0) == ([], ["a"])  # one item cannot be both: the caller says so
