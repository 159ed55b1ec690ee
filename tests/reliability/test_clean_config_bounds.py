"""A clean TOML with wrong types or absurd sizes is one line naming the step and the option, before anything is
allocated or written: `bands = 1000000` used to try to allocate 7 TB, negative or huge `rows` and `workers`
and string numbers ended in tracebacks (some only inside a worker, after shards had been read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"Document number {i} of the corpus."}) + "\n" for i in range(3)))
    return path


BAD_STEPS = [
    ('name = "minhash_dedup"\nbands = 1000000', "'minhash_dedup'", "bands must be between 1 and"),
    ('name = "minhash_dedup"\nbands = 0', "'minhash_dedup'", "bands must be between 1 and"),
    ('name = "minhash_dedup"\nrows = -3', "'minhash_dedup'", "rows must be between 1 and 8"),
    ('name = "minhash_dedup"\nrows = 99', "'minhash_dedup'", "rows must be between 1 and 8"),
    ('name = "minhash_dedup"\nbatch_size = 1000000000000', "'minhash_dedup'", "batch_size must be between"),
    ('name = "minhash_dedup"\nbands = "16"', "'minhash_dedup'", "bands: expected int, got '16'"),
    ('name = "minhash_dedup"\nverify = true', "'minhash_dedup'", "verify: expected float"),
    ('name = "extract"\ntimeout = "5"', "'extract'", "timeout: expected"),
    ('name = "extract"\nmax_html_bytes = -1', "'extract'", "max_html_bytes must be between 1 and"),
    ('name = "extract"\nbatch_size = 100000000', "'extract'", "batch_size must be between 1 and"),
    ('name = "gopher_quality"\nmin_doc_words = "30"', "'gopher_quality'", "min_doc_words: expected"),
    ('name = "gopher_repetition"\ntop_n_grams = [[2, "x"]]', "'gopher_repetition'", "top_n_grams[0][1]"),
    ('name = "gopher_repetition"\ntop_n_grams = [[0, 0.2]]', "'gopher_repetition'", "n-gram size"),
    ('name = "fineweb"\nshort_line_length = 1.5', "'fineweb'", "short_line_length: expected int"),
    ('name = "url_filter"\nbanned_words = "casino"', "'url_filter'", "banned_words: expected"),
    ('name = ["extract"]', "steps[0]", "unknown step"),
]


@pytest.mark.parametrize(("step", "who", "why"), BAD_STEPS, ids=[s[0].split("\n")[-1] for s in BAD_STEPS])
def test_a_bad_step_option_is_one_line_naming_step_and_option(
    corpus: Path, tmp_path: Path, step: str, who: str, why: str
) -> None:
    config = tmp_path / "clean.toml"
    config.write_text(f"[[steps]]\n{step}\n")
    out = tmp_path / "out"
    rc, printed, err = run_cli(["clean", str(corpus), "--out", str(out), "--config", str(config), "--quiet"])
    assert rc == 2, (printed, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert who in err and why in err, err
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("workers", ["-1", "1000000000"])
def test_absurd_workers_is_one_line(corpus: Path, tmp_path: Path, workers: str) -> None:
    out = tmp_path / "out"
    rc, printed, err = run_cli(["clean", str(corpus), "--out", str(out), "--workers", workers, "--quiet"])
    assert rc == 2, (printed, err)
    assert err.count("\n") == 1 and "workers must be between 0" in err, err
    assert not out.exists()
