"""A user's filesystem mistake is one line naming the path, exit 2, never a traceback: an --out that is a file, for
every stage that writes one. (A read-only --out takes the same path, PermissionError; CI runs as root, for whom
no directory is read-only, so that case is covered by the message test in tests/test_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

import kiln
from helpers import run_cli

ASSETS = Path(kiln.__file__).parent / "assets"
WARC = ASSETS / "quickstart" / "warc" / "warcio-example.warc.gz"
TEXT = ASSETS / "tinyshakespeare.txt"


def _commands(out: Path) -> dict[str, list[str]]:
    return {
        "ingest": ["ingest", str(WARC), "--out", str(out)],
        "clean": ["clean", str(WARC), "--out", str(out), "--workers", "1"],
        "tokenizer train": ["tokenizer", "train", str(TEXT), "--out", str(out), "--vocab-size", "300", "--quiet"],
        "tokenize": ["tokenize", str(TEXT), "--tokenizer", "byte", "--out", str(out), "--workers", "1", "--quiet"],
        "train": ["train", f"out_dir={out}", "max_steps=1", "model.n_layer=1", "sample_tokens=0"],
        "crawl": ["crawl", "http://127.0.0.1:9/", "--out", str(out), "--quiet"],
    }


@pytest.mark.parametrize("stage", list(_commands(Path("x"))))
def test_an_out_that_is_a_file_is_one_line_naming_it(stage: str, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.write_text("a file, not a directory")
    rc, _, err = run_cli(_commands(out)[stage])
    assert rc == 2, err
    assert "Traceback" not in err and str(out) in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert out.read_text() == "a file, not a directory"  # loses nothing
