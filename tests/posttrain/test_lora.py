"""LoRA through peft: only the adapters train, each checkpoint holds the merged weights (an ordinary checkpoint)
plus the adapters, merged == base + adapters, and a cut run resumes to the same log; in GRPO, sampling runs on the
merged weights of the current step."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from test_rl import prompts_file, rl_trainer
from test_sft import FAST, metrics

from helpers import cut_and_resume, run_cli
from kiln.model.checkpoint import latest_checkpoint, load_checkpoint
from kiln.posttrain.lora import add_lora, load_adapter, merged_state, without_adapters

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
    cut_and_resume("sft", common, run, 6)
    got, want = metrics(run), metrics(tmp_path / "ref")
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for x, y in zip(got, want, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-6)


def test_grpo_with_lora_samples_the_current_merged_weights(base_model, tmp_path):
    """`kiln rl lora_rank=R`: only the adapters train; the sampler is kiln's plain model holding base + adapters of
    the current step (a stale copy would sample the starting model, as rounds 1-7 of docs/benchmarks.md did), and it
    decodes, packed CPU path included, as a fresh copy with those weights and as the adapted model's forward."""
    from kiln.generate import SamplingParams, generate_batch

    trainer = rl_trainer(base_model, tmp_path, *LORA)
    try:
        trainable = [n for n, p in trainer.raw.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n for n in trainable)
        base = load_checkpoint(base_model)[0].state_dict()
        plain = trainer.sampler()
        assert plain is not trainer.raw and not any("lora_" in k for k in plain.state_dict())
        for k, v in plain.state_dict().items():  # B starts at zero: the merged weights are the base's
            assert torch.equal(v, base[k]), k
        prompts = [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]
        greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
        generate_batch(plain, prompts, greedy)  # the decode path packs the starting weights
        trainer.train_step()
        trainer.train_step()
        assert trainer.sampler() is plain
        merged = merged_state(trainer.raw)
        assert not torch.equal(merged["blocks.0.attn.qkv.weight"], base["blocks.0.attn.qkv.weight"])
        assert torch.equal(merged["wte.weight"], base["wte.weight"])  # no adapter there: frozen
        for k, v in plain.state_dict().items():
            assert torch.equal(v, merged[k]), k
        fresh = without_adapters(trainer.raw).eval()
        fresh.load_state_dict(merged)
        got = [c.tokens for c in generate_batch(plain, prompts, greedy)]
        assert got == [c.tokens for c in generate_batch(fresh, prompts, greedy)]
        ids = torch.tensor([prompts[1] + got[1]])
        with torch.no_grad():
            a = plain(ids, all_logits=True)[0]
            b = trainer.raw.eval()(ids, all_logits=True)[0]
        assert (a - b).abs().max().item() < 1e-4
    finally:
        trainer.metrics.close()


def test_a_lora_grpo_run_saves_merged_weights_and_resumes_to_the_same_log(base_model, tmp_path):
    data = prompts_file(tmp_path / "prompts.jsonl")
    common = [str(base_model), str(data), "device=cpu", "precision=fp32", "threads=1", "batch_size=2", "group=4",
              "max_new_tokens=12", "max_steps=4", "checkpoint_interval=2", "keep_last=5", "eval_interval=100",
              "log_interval=1", "lr=1e-2", "val_fraction=0.2", *LORA]  # fmt: skip
    rc, out, err = run_cli(["rl", *common, f"out_dir={tmp_path / 'ref'}"])
    assert rc == 0, err
    assert "LoRA rank 4" in out
    merged, _, _ = load_checkpoint(tmp_path / "ref")
    rebuilt = add_lora(load_checkpoint(base_model)[0], 4, 8.0, ["qkv", "proj", "fc"])
    load_adapter(rebuilt, latest_checkpoint(tmp_path / "ref"))
    ids = torch.arange(1, 40)[None]
    with torch.no_grad():
        assert (merged.eval()(ids, all_logits=True)[0] - rebuilt.eval()(ids, all_logits=True)[0]).abs().max() < 1e-4

    run = tmp_path / "cut"
    cut_and_resume("rl", common, run, 4)
    got, want = metrics(run), metrics(tmp_path / "ref")
    assert [m["step"] for m in got] == [1, 2, 3, 4]
    for x, y in zip(got, want, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-6)
        assert x["reward/mean"] == pytest.approx(y["reward/mean"])
