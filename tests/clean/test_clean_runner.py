"""The `kiln clean` runner's mechanics with small stand-in steps: phases, stats, samples, workers, resume.

The real steps (extraction, filters, dedup, PII) have their own tests; here the registry points at tiny
steps of tests/clean_steps.py so the runner's bookkeeping is checked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from clean_steps import REGISTRY

from kiln.clean import runner as clean_module
from kiln.clean.runner import CleanConfig, clean, load_steps_toml, split_phases


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clean_module, "STEPS", REGISTRY)


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


def test_clean_keeps_first_copies_in_input_order_and_counts_every_drop(corpus: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = clean(CleanConfig(inputs=[str(p) for p in corpus], out_dir=str(out), workers=1, steps=STEPS), False)
    outputs = _outputs(out)
    assert list(outputs) == ["00000-a.parquet", "00001-b.parquet", "00002-c.parquet"]
    texts = [t for rows in outputs.values() for _, t in rows]
    assert texts == ["A LONG ENOUGH TEXT ONE", "SHARED TEXT ACROSS SHARDS", "ANOTHER LONG TEXT HERE",
                     "THE THIRD SHARD'S OWN TEXT"]  # fmt: skip
    by_name = {s["name"]: s for s in stats["steps"]}
    assert by_name["short"]["in"] == 9 and by_name["short"]["dropped_by_reason"] == {"too_short": 3}
    assert by_name["seen"]["in"] == 6 and by_name["seen"]["dropped_by_reason"] == {"duplicate": 2}
    assert by_name["upper"]["in"] == by_name["upper"]["kept"] == 4
    assert stats["documents_out"] == 4
    for earlier, later in zip(stats["steps"], stats["steps"][1:], strict=False):
        assert later["in"] == earlier["kept"]  # nothing is lost between steps
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["steps"] == stats["steps"]
    samples = json.loads((out / "dropped_samples.json").read_text())
    assert {(s["step"], s["reason"]) for s in samples} == {("short", "too_short"), ("seen", "duplicate")}


def test_worker_count_does_not_change_the_output(corpus: list[Path], tmp_path: Path) -> None:
    one = tmp_path / "one"
    two = tmp_path / "two"
    clean(CleanConfig(inputs=[str(p) for p in corpus], out_dir=str(one), workers=1, steps=STEPS), False)
    clean(CleanConfig(inputs=[str(p) for p in corpus], out_dir=str(two), workers=2, steps=STEPS), False)
    assert _outputs(one) == _outputs(two)


def test_rerun_skips_finished_shards_and_keeps_stats_right(corpus: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = CleanConfig(inputs=[str(p) for p in corpus], out_dir=str(out), workers=1, steps=STEPS)
    first = clean(cfg, False)
    before = _outputs(out)
    marker = out / ".stage1" / "00001-b.json"
    marker.unlink()  # as if the run had died while shard b was in progress
    finished = [out / ".stage1" / "00000-a.parquet", out / ".stage1" / "00002-c.parquet"]
    mtimes = [p.stat().st_mtime_ns for p in finished]
    second = clean(cfg, False)
    assert _outputs(out) == before
    # counts from the kept markers plus the redone shard (seconds are measured again: they may differ)
    assert _without_seconds(second["steps"]) == _without_seconds(first["steps"])
    assert marker.exists()
    assert [p.stat().st_mtime_ns for p in finished] == mtimes  # finished shards were not redone


def test_toml_pipeline_and_bad_steps(tmp_path: Path, corpus: list[Path]) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text('[[steps]]\nname = "short"\nmin_chars = 23\n')
    steps = load_steps_toml(config)
    stats = clean(CleanConfig(inputs=[str(corpus[0])], out_dir=str(tmp_path / "o"), workers=1, steps=steps), False)
    assert stats["steps"][0]["dropped_by_reason"] == {"too_short": 3}
    with pytest.raises(ValueError, match="unknown step"):
        CleanConfig(inputs=["x"], steps=[{"name": "nope"}]).validate()
    with pytest.raises(ValueError, match="bad option"):
        clean(CleanConfig(inputs=[str(corpus[0])], out_dir=str(tmp_path / "p"), steps=[{"name": "short", "x": 1}]))
    config.write_text("[[steps]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_steps_toml(config)
    with pytest.raises(FileNotFoundError):
        clean(CleanConfig(inputs=[str(tmp_path / "missing.jsonl")], out_dir=str(tmp_path / "q"), steps=STEPS))
