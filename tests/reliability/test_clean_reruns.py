"""`kiln clean` reruns are keyed by content, not by file name: cleaning `B/x.warc.gz` into a directory that once
cleaned `A/x.warc.gz` used to return A's documents (every re-crawl hits this: crawl output is always
`crawl-00000.warc.gz`), a changed step option was ignored, and the shards of an earlier run's other inputs stayed
where `kiln tokenize <out>` read them. Now a shard's done-marker holds its input's identity (path, size,
mtime_ns) and a fingerprint of the phase-1 steps; anything else is redone, and stale shards are removed."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from kiln.clean import CleanConfig, run
from kiln.tokenize.corpus import find_inputs as tokenize_inputs

STEPS = [{"name": "extract"}]


def _warc(path: Path, pages: list[tuple[str, str]], gz: bool = True) -> Path:
    """A WARC of HTML responses (url, paragraph text)."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for url, text in pages:
        body = f"<html><head><title>t</title></head><body><h1>Page</h1><p>{text}</p></body></html>".encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def _urls(out: Path) -> list[str]:
    """Every URL `kiln tokenize <out>` would read (its own file discovery), in file order."""
    return [u for f in tokenize_inputs([out]) for u in pq.read_table(f, columns=["url"]).column("url").to_pylist()]


def _clean(inputs: list[Path], out: Path, steps: list[dict] | None = None) -> dict:
    cfg = CleanConfig(inputs=[str(p) for p in inputs], out_dir=str(out), workers=1, steps=steps or STEPS, quiet=True)
    return run(cfg).to_json()


def test_same_name_other_content_is_cleaned_again(tmp_path: Path) -> None:
    a = _warc(tmp_path / "A" / "x.warc.gz", [(f"http://a.example/{i}", f"Page {i} from crawl A.") for i in range(3)])
    b = _warc(tmp_path / "B" / "x.warc.gz", [(f"http://b.example/{i}", f"Page {i} from crawl B.") for i in range(2)])
    out = tmp_path / "out"
    _clean([a], out)
    assert _urls(out) == [f"http://a.example/{i}" for i in range(3)]
    stats = _clean([b], out)
    assert _urls(out) == ["http://b.example/0", "http://b.example/1"]  # B's documents, not A's
    assert stats["documents_out"] == 2 and stats["inputs"][0]["documents"] == 2


def test_a_touched_input_of_the_same_size_is_cleaned_again(tmp_path: Path) -> None:
    """Same path, same size, other bytes: the mtime_ns tells (as `make` and rsync trust it)."""
    path = _warc(tmp_path / "in" / "x.warc", [("http://a.example/1", "The text of the page.")], gz=False)
    out = tmp_path / "out"
    _clean([path], out)
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b"http://a.example/1", b"http://b.example/1"))
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    _clean([path], out)
    assert _urls(out) == ["http://b.example/1"]


def test_a_changed_step_option_redoes_the_shard(tmp_path: Path) -> None:
    path = _warc(tmp_path / "x.warc.gz", [("http://a.example/1", "A page with some text in it.")])
    out = tmp_path / "out"
    assert _clean([path], out)["documents_out"] == 1
    stats = _clean([path], out, [{"name": "extract", "max_html_bytes": 10}])  # now every page is too large
    assert stats["documents_out"] == 0
    assert stats["steps"][0]["dropped_by_reason"] == {"extract_too_large": 1}
    assert _urls(out) == []
    assert _clean([path], out)["documents_out"] == 1  # and back


def test_an_earlier_runs_extra_input_leaves_no_shard(tmp_path: Path) -> None:
    a = _warc(tmp_path / "A" / "x.warc.gz", [("http://a.example/1", "Page one of crawl A.")])
    extra = _warc(tmp_path / "A" / "y.warc.gz", [("http://extra.example/1", "Page of the extra input.")])
    out = tmp_path / "out"
    _clean([a, extra], out)
    assert _urls(out) == ["http://a.example/1", "http://extra.example/1"]
    _clean([a], out)
    assert _urls(out) == ["http://a.example/1"]
    assert sorted(p.name for p in out.glob("*.parquet")) == ["00000-x.parquet"]
    assert sorted(p.name for p in (out / ".stage1").iterdir()) == ["00000-x.json", "00000-x.parquet"]


def test_an_unchanged_rerun_reuses_every_shard(tmp_path: Path) -> None:
    path = _warc(tmp_path / "x.warc.gz", [("http://a.example/1", "A page with some text in it.")])
    out = tmp_path / "out"
    _clean([path], out)
    marker = out / ".stage1" / "00000-x.json"
    shard = out / ".stage1" / "00000-x.parquet"
    stamp = (marker.stat().st_mtime_ns, shard.stat().st_mtime_ns)
    key = json.loads(marker.read_text())["key"]
    assert set(key) == {"path", "size", "mtime_ns", "steps"}
    _clean([path], out)
    assert (marker.stat().st_mtime_ns, shard.stat().st_mtime_ns) == stamp
    assert _urls(out) == ["http://a.example/1"]


def test_other_files_in_the_output_directory_are_left_alone(tmp_path: Path) -> None:
    path = _warc(tmp_path / "x.warc.gz", [("http://a.example/1", "A page with some text in it.")])
    out = tmp_path / "out"
    _clean([path], out)
    mine = out / "notes.parquet"
    mine.write_bytes(b"not kiln's")
    _clean([path], out)
    assert mine.read_bytes() == b"not kiln's"


def test_a_killed_runs_temporary_files_are_removed(tmp_path: Path) -> None:
    path = _warc(tmp_path / "x.warc.gz", [("http://a.example/1", "A page with some text in it.")])
    out = tmp_path / "out"
    _clean([path], out)
    leftovers = [out / ".00000-x.parquet.tmp", out / ".stage1" / ".00000-x.parquet.tmp",
                 out / ".stage1" / ".00000-x.json.k2j4l1.tmp"]  # fmt: skip
    for leftover in leftovers:
        leftover.write_bytes(b"half a write")
    _clean([path], out)
    assert [p for p in leftovers if p.exists()] == []
    assert _urls(out) == ["http://a.example/1"]
