"""Train's stage contract: documented config fields, `load_train_config` (presets, resume), `run(config) ->
TrainSummary` (what it prints, its exit code), the resolved config beside the run, and `Trainer.state_dict()` as
the one list of what a checkpoint restores."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from helpers import TINY_TRAIN, sentence_corpus
from kiln.config import load_config, to_dict
from kiln.model import GPTConfig, preset
from kiln.model.checkpoint import latest_checkpoint
from kiln.stage import field_docs
from kiln.train import TrainConfig, TrainSummary, load_train_config, run
from kiln.train.state import read_trainer_state

# Without device=cpu and with the model shape of TINY_TRAIN, so each test states what it sets.
TINY = [*TINY_TRAIN, "max_steps=4", "eval_interval=2", "warmup_steps=1", "lr=1e-2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(sentence_corpus(400), encoding="utf-8")
    return path


def _run(cfg: TrainConfig) -> TrainSummary:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run(cfg)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[TrainConfig, TrainSummary]:
    out_dir = tmp_path_factory.mktemp("run") / "run"
    cfg = load_train_config(None, [*TINY, f"data={corpus}", f"out_dir={out_dir}"])
    return cfg, _run(cfg)


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("cls", [TrainConfig, GPTConfig])
def test_every_config_field_has_a_docstring(cls: type) -> None:
    docs = field_docs(cls)
    assert docs and not [name for name, doc in docs.items() if not doc.strip()]


def test_the_preset_is_the_base_and_model_keys_apply_on_top(tmp_path: Path) -> None:
    cfg = load_train_config(None, ["preset=tiny-llama", "model.n_layer=2"])
    assert cfg.model == preset("tiny-llama", n_layer=2)
    assert cfg.resume is None
    assert load_train_config(None, ["model.n_layer=2"]).model == preset("char-cpu", n_layer=2)

    file = tmp_path / "run.toml"
    file.write_text('preset = "tiny"\nmax_steps = 7\n[model]\nn_embd = 64\n', encoding="utf-8")
    cfg = load_train_config(str(file), ["model.n_layer=1"])
    assert (cfg.preset, cfg.max_steps) == ("tiny", 7)
    assert cfg.model == preset("tiny", n_embd=64, n_layer=1)
    assert load_train_config(str(file), ["preset=tiny-llama"]).model == preset("tiny-llama", n_embd=64)


def test_resume_starts_from_the_saved_config(finished: tuple[TrainConfig, TrainSummary], tmp_path: Path) -> None:
    cfg, _ = finished
    resumed = load_train_config(None, [f"resume={cfg.out_dir}", "max_steps=6"])
    assert resumed.resume == str(cfg.out_dir)
    assert resumed.max_steps == 6  # the override ...
    assert resumed.model == cfg.model and resumed.lr == cfg.lr and resumed.data == cfg.data  # ... on the saved run
    assert Path(resumed.out_dir) == Path(cfg.out_dir)

    file = tmp_path / "more.toml"
    file.write_text("max_steps = 8\n", encoding="utf-8")
    with pytest.raises(ValueError, match="give only key=value overrides"):
        load_train_config(str(file), [f"resume={cfg.out_dir}"])

    # resume inside a file: the saved config is the base, the file's keys and then the overrides change it
    file.write_text(f"resume = {json.dumps(str(cfg.out_dir))}\nmax_steps = 8\nkeep_last = 3\n", encoding="utf-8")
    from_file = load_train_config(str(file), ["max_steps=9"])
    assert (from_file.resume, from_file.max_steps, from_file.keep_last) == (str(cfg.out_dir), 9, 3)
    assert from_file.model == cfg.model
    assert load_train_config(str(file), ["resume=none"]).resume is None  # the command line can say "fresh"


# ------------------------------------------------------------------------------------------------ run


def test_run_returns_a_summary_that_prints_what_kiln_train_printed(
    finished: tuple[TrainConfig, TrainSummary],
) -> None:
    cfg, summary = finished
    assert isinstance(summary, TrainSummary)
    assert summary.exit_code == 0 and summary.steps == 4 and summary.error is None
    state = read_trainer_state(latest_checkpoint(cfg.out_dir))
    assert summary.val_loss == state["val_loss"]
    assert summary.render() == (
        f"\nval loss {summary.val_loss:.4f} ({summary.val_bpb:.3f} bits/byte) after 4 steps\n"
        f"checkpoints: {cfg.out_dir}   (try: kiln generate --checkpoint {cfg.out_dir})"
    )
    with_sample = TrainSummary(**{**to_dict(summary), "sample": "To be"})
    assert with_sample.render().endswith("\n\nsample:\nTo be")
    assert json.loads(json.dumps(summary.to_json()))["steps"] == 4


def test_the_resolved_config_lands_beside_the_run(finished: tuple[TrainConfig, TrainSummary]) -> None:
    cfg, _ = finished
    path = Path(cfg.out_dir) / "kiln-train.toml"
    assert load_config(TrainConfig, path) == cfg


def test_a_resumed_run_saves_its_config_without_resume(
    finished: tuple[TrainConfig, TrainSummary], tmp_path: Path
) -> None:
    out_dir = tmp_path / "run"
    shutil.copytree(finished[0].out_dir, out_dir)
    cfg = load_train_config(None, [f"resume={out_dir}", "max_steps=6"])
    summary = _run(cfg)
    assert summary.exit_code == 0 and summary.steps == 6
    resolved = load_config(TrainConfig, out_dir / "kiln-train.toml")
    assert resolved.resume is None and resolved.max_steps == 6
    state = read_trainer_state(latest_checkpoint(out_dir))
    assert state["train_config"]["resume"] is None and state["step"] == 6
    # so a later resume of this run starts from its saved config, not from where the last one resumed
    assert load_train_config(None, [f"resume={out_dir}"]).max_steps == 6


def test_a_diverging_run_ends_with_exit_1_and_says_why(corpus: Path, tmp_path: Path) -> None:
    argv = [*TINY, "warmup_steps=0", "schedule=constant", "grad_clip=0", "lr=1e6", "loss_spike_factor=0"]
    summary = _run(load_train_config(None, [*argv, f"data={corpus}", f"out_dir={tmp_path / 'run'}"]))
    assert summary.exit_code == 1
    assert summary.render().startswith("kiln train: loss became nan at step 2")
    assert summary.steps == 1


def test_exit_codes_and_quiet_ranks() -> None:
    stopped = TrainSummary(out_dir="runs/x", steps=3, interrupted=15)
    assert stopped.exit_code == 128 + 15 and stopped.render() == ""  # the trainer has said how to resume
    assert TrainSummary(out_dir="runs/x", steps=3, is_main=False).render() == ""
    assert TrainSummary(out_dir="runs/x", error="loss became nan", is_main=False).render() == ""


# ------------------------------------------------------------------------------------------------ Trainer


def test_the_state_dict_is_what_a_checkpoint_holds(finished: tuple[TrainConfig, TrainSummary], tmp_path: Path) -> None:
    """Save and resume go through Trainer.state_dict()/load_state_dict(): trainer_state.json is that dict plus
    what describes the checkpoint (why it was written, the config, the optimizer file's checksum)."""
    from kiln.train import distributed as D
    from kiln.train.trainer import Trainer

    out_dir = tmp_path / "run"
    shutil.copytree(finished[0].out_dir, out_dir)
    cfg = load_train_config(None, [f"resume={out_dir}"])
    saved = read_trainer_state(latest_checkpoint(out_dir))
    info, device = D.init_distributed("cpu")
    trainer = Trainer(cfg, info, device, log=lambda _: None, resume=cfg.resume)
    state = trainer.state_dict()
    trainer.metrics.close()
    assert set(saved) - set(state) == {"reason", "train_config", "optimizer_sha256"}
    assert {k: state[k] for k in trainer.progress.SAVED} == {k: saved[k] for k in trainer.progress.SAVED}
    assert state["loader"] == saved["loader"] and state["rng"] == saved["rng"]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_decoding_after_an_optimizer_step_uses_the_updated_weights(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, optimizer: str
) -> None:
    """The CPU decode path caches oneDNN-packed copies of the weights, keyed on each weight's version counter, and
    torch's fused CPU AdamW updates weights without bumping it: a policy sampled in process (kiln rl, the trainer's
    samples) decoded with the weights it started from while training moved the real ones. Each step now bumps the
    counters, so decoding between steps uses the weights of that step."""
    import torch

    from kiln.model import cpu_fast
    from kiln.train import distributed as D
    from kiln.train.trainer import Trainer

    if not cpu_fast.available():
        pytest.skip("this PyTorch has no oneDNN packed linear")
    monkeypatch.setattr(cpu_fast, "forced", "packed")
    cfg = load_train_config(None, [*TINY, f"data={corpus}", f"out_dir={tmp_path / 'run'}", f"optimizer={optimizer}",
                                   "lr=0.05", "precision=fp32"])  # fmt: skip
    info, device = D.init_distributed("cpu")
    trainer = Trainer(cfg, info, device, log=lambda _: None)
    model, idx = trainer.raw, torch.tensor([[1, 2, 3, 4, 5]])

    def logits(packed: bool) -> torch.Tensor:
        model.eval()
        with torch.inference_mode(), cpu_fast.packed_linears(model) if packed else contextlib.nullcontext():
            out = model(idx, all_logits=True)[0]
        model.train()
        return out

    before = logits(packed=True)  # packs the weights
    trainer.train_step()
    after_plain, after_packed = logits(packed=False), logits(packed=True)
    trainer.metrics.close()
    assert not torch.allclose(after_plain, before, atol=1e-3), "the step should have moved the logits"
    torch.testing.assert_close(after_packed, after_plain, rtol=1e-4, atol=1e-4)
