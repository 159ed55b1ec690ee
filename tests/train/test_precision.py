"""precision="auto" on CPU: which CPUs it measures on, the timing, and the margin bf16 must win by."""

from __future__ import annotations

import time

import pytest
import torch

from kiln.train import precision as precision_mod
from kiln.train.precision import BF16_MARGIN, faster_precision, resolve_precision, time_precisions

CPU = torch.device("cpu")


def test_auto_measures_only_where_bf16_is_in_hardware_without_amx(monkeypatch) -> None:
    calls: list[int] = []

    def measure() -> str:
        calls.append(1)
        return "bf16"

    monkeypatch.setattr(precision_mod, "native_bf16", lambda: True)
    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: True)
    assert resolve_precision("auto", CPU, measure) == "bf16" and calls == []  # AMX: bf16 without timing
    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: False)
    assert resolve_precision("auto", CPU, measure) == "bf16" and calls == [1]  # AVX512-BF16 only: measured
    assert resolve_precision("auto", CPU, lambda: "fp32") == "fp32"
    assert resolve_precision("auto", CPU) == "fp32"  # nothing to measure with (the ranks that are not rank 0)
    assert resolve_precision("fp32", CPU, measure) == "fp32" and calls == [1]  # an explicit choice is not timed
    assert resolve_precision("bf16", CPU, measure) == "bf16" and calls == [1]
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)
    assert resolve_precision("auto", CPU, measure) == "fp32" and calls == [1]  # emulated bf16: never worth timing


@pytest.mark.parametrize(
    ("fp32_s", "bf16_s", "expected"),
    [(3.1, 2.1, "bf16"), (BF16_MARGIN, 1.0, "bf16"), (1.15, 1.0, "fp32"), (1.0, 1.0, "fp32"), (1.0, 2.0, "fp32")],
)
def test_bf16_must_win_by_the_margin(fp32_s: float, bf16_s: float, expected: str) -> None:
    assert faster_precision({"fp32": fp32_s, "bf16": bf16_s}) == expected


def test_time_precisions_interleaves_and_keeps_each_ones_best() -> None:
    calls: list[str] = []

    def step(precision: str) -> None:
        calls.append(precision)
        time.sleep(0.03 if precision == "fp32" else 0.01)
        if len(calls) <= 2:
            time.sleep(0.1)  # the first round is the warm-up: slow, and not what is kept

    seconds = time_precisions(step, rounds=3, min_seconds=0)
    assert calls == ["fp32", "bf16"] * 3
    assert 0.03 <= seconds["fp32"] < 0.1 and 0.01 <= seconds["bf16"] < 0.1
    assert faster_precision(seconds) == "bf16"


def test_time_precisions_repeats_a_short_step() -> None:
    calls: list[str] = []
    seconds = time_precisions(calls.append, rounds=2, min_seconds=0.05)
    assert 4 < len(calls) <= 100 and len(calls) % 2 == 0  # more rounds than asked, at most 50
    assert set(seconds) == {"fp32", "bf16"}
