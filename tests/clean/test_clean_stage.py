"""`kiln clean` as a stage: its config loads from one TOML file (top-level keys and [[steps]]), every field is
documented, `run` leaves the resolved config beside its output, and the summary prints the familiar table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from clean_steps import REGISTRY

from kiln.clean import CleanConfig, CleanSummary, registry, run
from kiln.clean.runner import clean
from kiln.config import ConfigError, load_config
from kiln.stage import config_file_name, field_docs


@pytest.fixture
def stand_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "STEPS", REGISTRY)


@pytest.fixture
def corpus(tmp_path: Path) -> list[str]:
    paths = []
    for name, texts in {"a": ["a long enough text one", "tiny", "dup dup dup dup"], "b": ["dup dup dup dup"]}.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        paths.append(str(path))
    return paths


def test_every_config_field_is_documented() -> None:
    docs = field_docs(CleanConfig)
    assert list(docs) == ["inputs", "out_dir", "workers", "executor", "ray_address", "steps", "quiet"]
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]


def test_one_toml_file_holds_the_settings_and_the_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "clean.toml"
    path.write_text(
        'inputs = ["crawl", "ingest"]\nout_dir = "work/clean"\nworkers = 2\nexecutor = "ray"\n'
        'ray_address = "auto"\n\n[[steps]]\nname = "extract"\nengine = "trafilatura"\n\n'
        '[[steps]]\nname = "langid"\nlanguages = ["en", "fr"]\n'
    )
    cfg = load_config(CleanConfig, path, ["quiet=true", "workers=3"])
    assert cfg == CleanConfig(
        inputs=["crawl", "ingest"], out_dir="work/clean", workers=3, executor="ray", ray_address="auto",
        steps=[{"name": "extract", "engine": "trafilatura"}, {"name": "langid", "languages": ["en", "fr"]}],
        quiet=True,
    )  # fmt: skip
    assert load_config(CleanConfig, None, ["inputs=['x']"]).steps == [{"name": n} for n in registry.DEFAULT_STEPS]

    for bad, named in [
        ('inputs = ["x"]\nworkers = "two"\n', "workers"),
        ('inputs = ["x"]\nexecutor = "dask"\n', "executor"),
        ('inputs = ["x"]\nworkerz = 2\n', "workerz"),
        ('inputs = ["x"]\n[[steps]]\nname = "nope"\n', "unknown step"),
        ('inputs = ["x"]\nsteps = ["extract"]\n', "steps[0]"),
        ("workers = 1\n", "inputs"),
    ]:
        path.write_text(bad)
        with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
            load_config(CleanConfig, path)


@pytest.mark.usefixtures("stand_in_steps")
def test_run_writes_its_resolved_config_which_repeats_the_run(corpus: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = CleanConfig(inputs=corpus, out_dir=str(out), workers=1, steps=[{"name": "short", "min_chars": 5}], quiet=True)
    first = run(cfg)
    resolved = out / config_file_name("clean")
    assert resolved.name == "kiln-clean.toml"
    assert load_config(CleanConfig, resolved) == cfg
    again = run(load_config(CleanConfig, resolved))  # finds every shard done: same counts
    strip = [{k: v for k, v in s.items() if k != "seconds"} for s in first.steps]
    assert [{k: v for k, v in s.items() if k != "seconds"} for s in again.steps] == strip
    assert first.documents_out == again.documents_out == 3


@pytest.mark.usefixtures("stand_in_steps")
def test_summary_is_stats_json_and_renders_the_table(corpus: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    steps = [{"name": "short", "min_chars": 5}, {"name": "seen"}]
    summary = run(CleanConfig(inputs=corpus, out_dir=str(out), workers=1, steps=steps, quiet=True))
    stats = json.loads((out / "stats.json").read_text())
    assert stats == summary.to_json()
    assert list(stats) == ["inputs", "documents_out", "steps", "seconds"]  # the file's content as before
    assert CleanSummary.from_stats(stats, str(out)) == summary
    assert summary.exit_code == 0

    fixed = dataclasses.replace(summary, seconds=1.25, steps=[{**s, "seconds": 0.5} for s in summary.steps])
    assert fixed.render().split("\n") == [
        "step                        in      kept   dropped  seconds  top reasons",
        "short                        4         3         1     0.50  too_short 1",
        "seen                         3         2         1     0.50  duplicate 1",
        f"2 documents kept -> {out} (1.2 s)",
    ]

    # What kiln.cli calls until it runs stages through `run`: the same run, as the stats.json dict.
    old = clean(CleanConfig(inputs=corpus, out_dir=str(out), workers=1, steps=steps), progress=False)

    def untimed(d: dict) -> dict:  # timings differ from run to run (a step's seconds too: 0.0 vs 0.0001)
        return {k: [{**s, "seconds": None} for s in v] if k == "steps" else v for k, v in d.items() if k != "seconds"}

    assert untimed(old) == untimed(stats)
