"""Tests for kiln.train: the training loop, its metrics, the LR schedule, the config checks and the data."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import sentence_corpus
from kiln.model import GPT, GPTConfig, preset
from kiln.model.checkpoint import load_checkpoint
from kiln.tokenizer import load_tokenizer
from kiln.train.config import TrainConfig
from kiln.train.data import TextData, read_text
from kiln.train.loader import count_windows, val_batches
from kiln.train.optim import build_optimizers
from kiln.train.schedule import cosine_lr
from kiln.train.trainer import train

METRIC_KEYS = {
    *("step", "train_loss", "val_loss", "val_bpb", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed_s", "tokens")
}


def _corpus(n_sentences: int = 120, seed: int = 0) -> str:
    return sentence_corpus(n_sentences, seed)


def _cfg(tmp_path: Path, text: str | None = None, **overrides) -> TrainConfig:
    data = tmp_path / "data.txt"
    if not data.exists():
        data.write_text(text if text is not None else _corpus(), encoding="utf-8")
    fields = dict(
        data=str(data),
        out_dir=tmp_path / "run",
        preset="tiny",
        model=preset("tiny", n_layer=1, n_embd=32, n_head=2, block_size=32),
        batch_size=8,
        max_steps=40,
        lr=1e-2,
        warmup_steps=5,
        eval_interval=10,
        eval_batches=2,
        sample_tokens=0,
        device="cpu",
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def _quiet(_: str) -> None:
    pass


def _metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict, list[dict]]:
    tmp = tmp_path_factory.mktemp("train")
    cfg = _cfg(tmp)
    summary = train(cfg, log=_quiet)
    return cfg, summary, _metrics(cfg.out_dir)


# ------------------------------------------------------------------------------------------------ train()


def test_metrics_jsonl_has_one_line_per_eval(run) -> None:
    cfg, summary, metrics = run
    assert summary["steps"] == cfg.max_steps
    assert [m["step"] for m in metrics] == [10, 20, 30, 40]
    for m in metrics:
        assert set(m) == METRIC_KEYS
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in m.values())
        assert m["tokens_per_s"] > 0
        assert m["grad_norm"] > 0
    elapsed = [m["elapsed_s"] for m in metrics]
    assert elapsed == sorted(elapsed)


def test_summary_matches_last_metrics(run) -> None:
    cfg, summary, metrics = run
    last = metrics[-1]
    assert summary["val_loss"] == pytest.approx(last["val_loss"], abs=1e-5)
    assert summary["train_loss"] == pytest.approx(last["train_loss"], abs=1e-5)
    assert summary["best_val_loss"] == pytest.approx(min(m["val_loss"] for m in metrics), abs=1e-5)
    assert summary["out_dir"] == str(cfg.out_dir)
    assert summary["sample"] == ""


def test_learning_happens(run) -> None:
    cfg, summary, metrics = run
    vocab = len(set(Path(cfg.data).read_text(encoding="utf-8")))
    chance = math.log(vocab)
    assert metrics[0]["val_loss"] < chance + 0.5
    # 40 steps on a repetitive text: far below the loss of a uniform guess over the vocabulary
    assert summary["val_loss"] < chance - 1.0
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]


def test_val_bpb_is_val_loss_in_bits_per_byte(run) -> None:
    """bits/byte divides by the UTF-8 bytes of exactly the evaluated target tokens."""
    cfg, summary, metrics = run
    data_dir = cfg.out_dir / "data"
    tok = load_tokenizer(data_dir / "tokenizer")
    shards, block = [data_dir / "val.bin"], cfg.model.block_size
    n = min(cfg.eval_batches, count_windows(shards, block) // cfg.batch_size)  # as many as the val split holds
    batches = list(val_batches(shards, cfg.batch_size, block, n))
    targets = [int(t) for _, y in batches for t in y.reshape(-1)]
    bytes_per_token = len(tok.decode(targets).encode("utf-8")) / len(targets)
    assert bytes_per_token > 1.01  # the corpus has multi-byte characters, so the division matters
    for m in metrics:
        assert m["val_bpb"] == pytest.approx(m["val_loss"] / math.log(2) / bytes_per_token, abs=2e-5)
    assert summary["val_bpb"] == pytest.approx(summary["val_loss"] / math.log(2) / bytes_per_token, rel=1e-9)


def test_logged_lr_follows_the_schedule(run) -> None:
    cfg, _, metrics = run
    for m in metrics:
        s = m["step"] - 1  # the lr logged with step n is the one used for the n-th update (index n - 1)
        progress = (s - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps)
        expected = cosine_lr(s, progress, peak=cfg.lr, warmup=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio)
        assert m["lr"] == pytest.approx(expected, rel=1e-12)


def test_checkpoint_written_with_training_config(run) -> None:
    cfg, summary, _ = run
    model, tok, meta = load_checkpoint(cfg.out_dir)
    text = Path(cfg.data).read_text(encoding="utf-8")
    assert tok is not None and tok.decode(tok.encode(text)) == text
    assert model.config.vocab_size == tok.vocab_size == len(set(text))
    assert model.config.n_embd == 32 and model.config.block_size == 32
    assert meta["step"] == summary["steps"]
    assert meta["val_loss"] == pytest.approx(summary["val_loss"])
    assert meta["train"]["max_steps"] == cfg.max_steps
    assert meta["train"]["preset"] == "tiny"


def test_same_seed_is_deterministic(tmp_path: Path) -> None:
    def losses(sub: str, seed: int) -> list[tuple]:
        cfg = _cfg(tmp_path, out_dir=tmp_path / sub, max_steps=12, eval_interval=4, seed=seed)
        train(cfg, log=_quiet)
        return [
            (m["step"], m["train_loss"], m["val_loss"], m["grad_norm"], m["lr"])
            for m in _metrics(cfg.out_dir)
            if "val_loss" in m
        ]

    first = losses("a", 1)
    assert len(first) == 3
    assert losses("b", 1) == first
    assert losses("c", 2) != first


def test_max_minutes_stops_early(tmp_path: Path) -> None:
    budget_s = 0.02 * 60
    cfg = _cfg(tmp_path, max_steps=100_000, max_minutes=0.02, eval_interval=100_000, eval_batches=1)
    start = time.perf_counter()
    summary = train(cfg, log=_quiet)
    wall = time.perf_counter() - start
    assert 1 <= summary["steps"] < cfg.max_steps
    assert budget_s <= wall < budget_s + 20
    metrics = [m for m in _metrics(cfg.out_dir) if "val_loss" in m]
    assert len(metrics) == 1  # the final evaluation still runs when time is up
    assert metrics[0]["step"] == summary["steps"]
    assert metrics[0]["elapsed_s"] >= budget_s
    # progress is measured by time, so the schedule has annealed close to its floor by the end
    assert metrics[0]["lr"] < cfg.lr * (cfg.min_lr_ratio + 0.1)
    load_checkpoint(cfg.out_dir)  # the final checkpoint was written


def test_grad_clip_zero_means_off(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, grad_clip=0.0, max_steps=3, eval_interval=3, eval_batches=1)
    summary = train(cfg, log=_quiet)
    assert summary["steps"] == 3
    assert _metrics(cfg.out_dir)[0]["grad_norm"] > 0


def test_log_callback_receives_the_model_line(tmp_path: Path) -> None:
    lines: list[str] = []
    train(_cfg(tmp_path, max_steps=1, eval_batches=1), log=lines.append)
    assert len(lines) == 1
    assert "parameters" in lines[0] and "vocab" in lines[0]


# ------------------------------------------------------------------------------------------------ schedule


def test_cosine_lr_warmup_is_linear_ramp() -> None:
    lrs = [cosine_lr(s, 0.0, peak=1.0, warmup=10, min_ratio=0.1) for s in range(10)]
    assert lrs == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[0] > 0  # the first update is not wasted at lr 0
    assert all(b > a for a, b in itertools.pairwise(lrs))


def test_cosine_lr_peak_at_end_of_warmup_and_floor_at_end() -> None:
    kw = dict(peak=3e-3, warmup=10, min_ratio=0.1)
    assert cosine_lr(9, 0.0, **kw) == pytest.approx(3e-3)
    assert cosine_lr(10, 0.0, **kw) == pytest.approx(3e-3)
    assert cosine_lr(10, 0.5, **kw) == pytest.approx(3e-3 * (0.1 + 0.9 * 0.5))
    assert cosine_lr(1000, 1.0, **kw) == pytest.approx(3e-4)
    # progress is clamped to [0, 1]
    assert cosine_lr(1000, 7.0, **kw) == pytest.approx(3e-4)
    assert cosine_lr(10, -0.5, **kw) == pytest.approx(3e-3)


def test_cosine_lr_monotone_after_warmup() -> None:
    warmup, total = 5, 205
    lrs = [
        cosine_lr(s, (s - warmup) / (total - warmup), peak=1.0, warmup=warmup, min_ratio=0.2)
        for s in range(warmup, total + 1)
    ]
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.2)
    assert all(b <= a for a, b in itertools.pairwise(lrs))
    assert min(lrs) >= 0.2 - 1e-12


def test_cosine_lr_without_warmup_and_with_zero_floor() -> None:
    assert cosine_lr(0, 0.0, peak=1.0, warmup=0, min_ratio=0.0) == pytest.approx(1.0)
    assert cosine_lr(50, 1.0, peak=1.0, warmup=0, min_ratio=0.0) == pytest.approx(0.0)
    assert cosine_lr(50, 1.0, peak=1.0, warmup=0, min_ratio=1.0) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("max_steps", 0),
        ("eval_interval", 0),
        ("eval_batches", -1),
        ("lr", 0.0),
        ("lr", -1e-3),
        ("min_lr_ratio", 1.5),
        ("warmup_steps", -1),
        ("val_fraction", 1.0),
        ("val_fraction", 0.0),
        ("grad_clip", -1.0),
        ("max_minutes", 0.0),
    ],
)
def test_validate_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must") as exc:
        TrainConfig(**{field: value}).validate()
    assert str(value) in str(exc.value)


def test_validate_checks_the_model() -> None:
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(model=GPTConfig(n_embd=30, n_head=4)).validate()


def test_defaults_are_valid() -> None:
    cfg = TrainConfig()
    assert cfg.validate() is cfg
    assert cfg.model == preset("char-cpu")


def test_train_validates_before_touching_disk(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        train(cfg, log=_quiet)
    assert not cfg.out_dir.exists()


# ------------------------------------------------------------------------------------------------ optimizer


@pytest.mark.parametrize("name", ["tiny", "tiny-llama"])
def test_weight_decay_only_on_matrices(name: str) -> None:
    model = GPT(preset(name, n_layer=2, n_embd=32, n_head=2, n_kv_head=None, block_size=16))
    cfg = TrainConfig(weight_decay=0.123, lr=5e-4, beta1=0.8, beta2=0.95)
    (opt,) = build_optimizers(model, cfg, torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.123
    assert no_decay["weight_decay"] == 0.0
    assert decay["params"] and all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    # every trainable parameter exactly once (a tied embedding/LM head is one parameter)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "wte.weight" in decayed
    assert not any("norm" in n for n in decayed)
    assert not any(n.endswith(".bias") for n in decayed)
    if name == "tiny":  # layernorm gains and biases exist and are not decayed
        assert no_decay["params"]
        assert any(names[id(p)].endswith(".bias") for p in no_decay["params"])
    for g in opt.param_groups:
        assert g["lr"] == 5e-4
        assert g["betas"] == (0.8, 0.95)


# ------------------------------------------------------------------------------------------------ data


def test_missing_data_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="training data not found") as exc:
        read_text(str(missing))
    assert str(missing) in str(exc.value)
    cfg = _cfg(tmp_path, data=str(missing))
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        train(cfg, log=_quiet)
    assert not cfg.out_dir.exists()


def test_data_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text(str(tmp_path))


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_empty_data_file(tmp_path: Path, content: str) -> None:
    cfg = _cfg(tmp_path, text=content)
    with pytest.raises(ValueError, match="empty") as exc:
        train(cfg, log=_quiet)
    assert "data.txt" in str(exc.value)


def test_data_too_small_for_block_size(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, text="tiny text, far too short for the context\n" * 2)
    with pytest.raises(ValueError, match="windows of 33 tokens"):
        train(cfg, log=_quiet)


def test_read_text_bundled_shakespeare() -> None:
    text = read_text("shakespeare")
    assert text.startswith("First Citizen")
    assert len(set(text)) == 65


def test_read_text_replaces_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff\xfe ok")
    assert read_text(str(path)) == "ok \ufffd\ufffd ok"


def _distinct_text(n: int) -> str:
    return "".join(chr(0x100 + i) for i in range(n))  # every token distinct and ids increasing


def test_text_data_split_and_bytes_per_token() -> None:
    text = _distinct_text(1000)
    data = TextData(text, val_fraction=0.1)
    assert len(data.train) == 900 and len(data.val) == 100
    assert np.array_equal(np.concatenate([data.train, data.val]), np.arange(1000))  # val is the tail
    assert data.bytes_per_token == 2.0  # U+0100.. are two UTF-8 bytes each
    assert data.tokenizer.vocab_size == 1000


def test_text_data_batch_targets_are_inputs_shifted_by_one() -> None:
    data = TextData(_distinct_text(1000), val_fraction=0.1)
    gen = torch.Generator().manual_seed(0)
    for split, ids in (("train", data.train), ("val", data.val)):
        x, y = data.batch(split, 16, 8, gen)
        assert x.shape == y.shape == (16, 8)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
            start = int(np.searchsorted(ids, row_x[0]))
            assert row_x == ids[start : start + 8].tolist()  # a contiguous window of this split
            assert row_y == ids[start + 1 : start + 9].tolist()


def test_text_data_batch_is_reproducible_from_the_generator() -> None:
    data = TextData(_distinct_text(500), val_fraction=0.2)
    a = data.batch("train", 4, 16, torch.Generator().manual_seed(3))
    b = data.batch("train", 4, 16, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_text_data_batch_split_too_small() -> None:
    data = TextData(_distinct_text(100), val_fraction=0.1)  # 10 val tokens
    with pytest.raises(ValueError, match="the val split has 10 tokens, too few for block_size 16"):
        data.batch("val", 2, 16, torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------------------ precision=auto


def test_auto_precision_times_the_model_and_changes_nothing_else(tmp_path: Path, monkeypatch) -> None:
    """On a CPU with bf16 in hardware but no AMX (here made to look like one, so the timing runs on any CPU), "auto"
    times a step of the run's own model both ways; the probe must leave the RNG and the gradients as they were, so
    the run equals one given the chosen precision outright."""
    from kiln.train import precision as precision_mod
    from kiln.train.precision import faster_precision

    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: True)
    lines: list[str] = []
    dropout = preset("tiny", n_layer=1, n_embd=32, n_head=2, block_size=32, dropout=0.1)  # the probe draws masks too
    auto = _cfg(tmp_path, out_dir=tmp_path / "auto", max_steps=6, eval_interval=3, model=dropout)
    train(auto, log=lines.append)
    line = next(text for text in lines if "parameters" in text)  # the describe() line
    found = re.search(r", (fp32|bf16) \(auto: a 8 x 32 step took ([\d.]+) ms in fp32, ([\d.]+) ms in bf16\)", line)
    assert found, line
    chosen, fp32_ms, bf16_ms = found[1], float(found[2]), float(found[3])
    assert fp32_ms > 0 and bf16_ms > 0
    assert chosen == faster_precision({"fp32": fp32_ms, "bf16": bf16_ms})

    given = _cfg(tmp_path, out_dir=tmp_path / "given", max_steps=6, eval_interval=3, model=dropout, precision=chosen)
    given_lines: list[str] = []
    train(given, log=given_lines.append)
    assert not any("(auto:" in text for text in given_lines)  # an explicit precision is not timed
    keys = ("step", "train_loss", "val_loss", "grad_norm", "lr")
    rows = [[[m[k] for k in keys] for m in _metrics(cfg.out_dir)] for cfg in (auto, given)]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    a, b = load_checkpoint(auto.out_dir)[0].state_dict(), load_checkpoint(given.out_dir)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
