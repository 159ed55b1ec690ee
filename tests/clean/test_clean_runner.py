"""The `kiln clean` runner's mechanics with small stand-in steps: phases, stats, samples, workers, resume.

The real steps (extraction, filters, dedup, PII) have their own tests; here the registry points at tiny
steps of tests/clean/clean_steps.py so the runner's bookkeeping is checked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from clean_steps import REGISTRY

from kiln.clean import CleanConfig, registry, run
from kiln.clean.registry import split_phases
from kiln.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def stand_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "STEPS", REGISTRY)


STEPS = [{"name": "short", "min_chars": 10}, {"name": "seen"}, {"name": "upper"}]


def _write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "url": f"http://x/{i}"}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> list[Path]:
    a = _write_jsonl(tmp_path / "a.jsonl", ["a long enough text one", "tiny", "shared text across shards", "x"])
    b = _write_jsonl(tmp_path / "b.jsonl", ["shared text across shards", "another long text here", "short"])
    c = _write_jsonl(tmp_path / "c.jsonl", ["a long enough text one", "the third shard's own text"])
    return [a, b, c]


def _outputs(out: Path) -> dict[str, list[tuple[str, str]]]:
    return {
        p.name: list(zip(*(pq.read_table(p).column(c).to_pylist() for c in ("id", "text")), strict=True))
        for p in sorted(out.glob("*.parquet"))
    }


def _without_seconds(steps: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "seconds"} for s in steps]


def test_phases_split_at_the_first_global_step() -> None:
    first, second = split_phases(STEPS)
    assert [s["name"] for s in first] == ["short"]
    assert [s["name"] for s in second] == ["seen", "upper"]


def _config(inputs: list[Path], out: Path, **fields) -> CleanConfig:
    return CleanConfig(inputs=[str(p) for p in inputs], out_dir=str(out), quiet=True, **fields)


def test_clean_keeps_first_copies_in_input_order_and_counts_every_drop(corpus: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run(_config(corpus, out, workers=1, steps=STEPS))
    outputs = _outputs(out)
    assert list(outputs) == ["00000-a.parquet", "00001-b.parquet", "00002-c.parquet"]
    texts = [t for rows in outputs.values() for _, t in rows]
    assert texts == ["A LONG ENOUGH TEXT ONE", "SHARED TEXT ACROSS SHARDS", "ANOTHER LONG TEXT HERE",
                     "THE THIRD SHARD'S OWN TEXT"]  # fmt: skip
    by_name = {s["name"]: s for s in summary.steps}
    assert by_name["short"]["in"] == 9 and by_name["short"]["dropped_by_reason"] == {"too_short": 3}
    assert by_name["seen"]["in"] == 6 and by_name["seen"]["dropped_by_reason"] == {"duplicate": 2}
    assert by_name["upper"]["in"] == by_name["upper"]["kept"] == 4
    assert summary.documents_out == 4
    for earlier, later in zip(summary.steps, summary.steps[1:], strict=False):
        assert later["in"] == earlier["kept"]  # nothing is lost between steps
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk == summary.to_json() and on_disk["steps"] == summary.steps
    samples = json.loads((out / "dropped_samples.json").read_text())
    assert {(s["step"], s["reason"]) for s in samples} == {("short", "too_short"), ("seen", "duplicate")}


def test_worker_count_does_not_change_the_output(corpus: list[Path], tmp_path: Path) -> None:
    one = tmp_path / "one"
    two = tmp_path / "two"
    run(_config(corpus, one, workers=1, steps=STEPS))
    run(_config(corpus, two, workers=2, steps=STEPS))
    assert _outputs(one) == _outputs(two)


def test_rerun_skips_finished_shards_and_keeps_stats_right(corpus: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = _config(corpus, out, workers=1, steps=STEPS)
    first = run(cfg)
    before = _outputs(out)
    marker = out / ".stage1" / "00001-b.json"
    marker.unlink()  # as if the run had died while shard b was in progress
    finished = [out / ".stage1" / "00000-a.parquet", out / ".stage1" / "00002-c.parquet"]
    mtimes = [p.stat().st_mtime_ns for p in finished]
    second = run(cfg)
    assert _outputs(out) == before
    # counts from the kept markers plus the redone shard (seconds are measured again: they may differ)
    assert _without_seconds(second.steps) == _without_seconds(first.steps)
    assert marker.exists()
    assert [p.stat().st_mtime_ns for p in finished] == mtimes  # finished shards were not redone


def test_toml_pipeline_and_bad_steps(tmp_path: Path, corpus: list[Path]) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text('workers = 1\nquiet = true\n\n[[steps]]\nname = "short"\nmin_chars = 23\n')
    overrides = [f"inputs=['{corpus[0]}']", f"out_dir={tmp_path / 'o'}"]
    summary = run(load_config(CleanConfig, config, overrides))
    assert summary.steps[0]["dropped_by_reason"] == {"too_short": 3}
    with pytest.raises(ValueError, match="unknown step"):
        CleanConfig(inputs=["x"], steps=[{"name": "nope"}]).validate()
    config.write_text('[[steps]]\nname = "nope"\n')
    with pytest.raises(ConfigError, match=r"steps\[0\]: unknown step"):
        load_config(CleanConfig, config, overrides)
    with pytest.raises(ValueError, match="bad option"):
        run(_config(corpus[:1], tmp_path / "p", steps=[{"name": "short", "x": 1}]))
    assert not (tmp_path / "p").exists()  # refused before anything was written
    config.write_text("[[steps]\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(CleanConfig, config, overrides)
    with pytest.raises(FileNotFoundError):
        run(_config([tmp_path / "missing.jsonl"], tmp_path / "q", steps=STEPS))
