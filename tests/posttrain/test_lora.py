"""LoRA through peft: only the adapters train, each checkpoint holds the merged weights (an ordinary checkpoint)
plus the adapters, merged == base + adapters, and a cut run resumes to the same log."""

from __future__ import annotations

import shutil

import pytest
import torch

pytest.importorskip("peft")

from test_sft import FAST, metrics

from helpers import run_cli
from kiln.model.checkpoint import latest_checkpoint, load_checkpoint
from kiln.posttrain.lora import add_lora, load_adapter

LORA = ["lora_rank=4", "lora_alpha=8"]


def test_lora_trains_adapters_and_saves_merged_weights(base_model, chat_file, tmp_path):
    run = tmp_path / "lora"
    argv = [str(base_model), str(chat_file), *FAST, *LORA, "max_steps=10", "eval_interval=5", f"out_dir={run}"]
    rc, out, err = run_cli(["sft", *argv])
    assert rc == 0, err
    evals = [m for m in metrics(run) if "val_token_acc" in m]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert "LoRA rank 4" in out and "trainable parameters" in out

    merged, _, _ = load_checkpoint(run)  # an ordinary kiln checkpoint
    base, _, _ = load_checkpoint(base_model)
    assert torch.equal(merged.wte.weight, base.wte.weight)  # no adapter on the embeddings: untouched
    assert not torch.equal(merged.blocks[0].attn.qkv.weight, base.blocks[0].attn.qkv.weight)

    rebuilt = add_lora(base, 4, 8.0, ["qkv", "proj", "fc"])
    load_adapter(rebuilt, latest_checkpoint(run))
    ids = torch.arange(1, 60)[None]
    with torch.no_grad():
        a = merged.eval()(ids, all_logits=True)[0]
        b = rebuilt.eval()(ids, all_logits=True)[0]
    assert (a - b).abs().max().item() < 1e-4
    trainable = sum(p.numel() for n, p in rebuilt.named_parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in base.parameters()) / 5


def test_a_cut_lora_run_resumes_to_the_same_log(base_model, chat_file, tmp_path):
    common = [str(base_model), str(chat_file), *FAST, *LORA, "max_steps=6", "eval_interval=3",
              "checkpoint_interval=3", "keep_last=5"]  # fmt: skip
    rc, _, err = run_cli(["sft", *common, f"out_dir={tmp_path / 'ref'}"])
    assert rc == 0, err
    run = tmp_path / "cut"
    rc, _, err = run_cli(["sft", *common, f"out_dir={run}"])
    assert rc == 0, err
    shutil.rmtree(run / "checkpoints" / "step_0000006")
    rc, _, err = run_cli(["sft", f"resume={run}"])
    assert rc == 0, err
    got, want = metrics(run), metrics(tmp_path / "ref")
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for x, y in zip(got, want, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-6)
