"""`kiln clean` accounts for every input file: `.jsonl.gz` used to be read as plain text (0 documents), `.txt`,
`.html`, garbage and truncated WARCs gave 0 documents and exit 0 with nothing in stats.json, and a Parquet file
without a `text` column dropped every row as "extract_empty" (or, with a `text` column of integers, printed a
traceback; its read errors named no file). Now each input has `{path, documents, problem}` in stats.json's
`inputs`, the summary lists the files with a problem, and a run in which no input yields a document is an
error (exit 2, one line naming the files)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from helpers import run_cli
from kiln.clean import CleanConfig, run

STEPS = [{"name": "extract"}]
TEXTS = ["The first document of the corpus.", "A second one, somewhat longer than the first."]


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


def _warc_bytes(n: int) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i in range(n):
        body = f"<html><body><h1>Page {i}</h1><p>Some text of page {i} in the archive.</p></body></html>".encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(f"http://a.example/{i}", "response", payload=io.BytesIO(body), http_headers=http)
        )
    return buf.getvalue()


def _member_bounds(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each gzip member (one per record)."""
    bounds, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(wbits=31)
        d.decompress(data[pos:])
        end = len(data) - len(d.unused_data)
        bounds.append((pos, end))
        pos = end
    return bounds


def _clean(inputs: list[Path], out: Path) -> dict:
    cfg = CleanConfig(inputs=[str(p) for p in inputs], out_dir=str(out), workers=1, steps=STEPS, quiet=True)
    return run(cfg).to_json()


def test_jsonl_gz_is_read_as_gzip(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl(TEXTS)))
    stats = _clean([path], tmp_path / "out")
    assert stats["documents_out"] == 2
    assert stats["inputs"] == [{"path": str(path), "documents": 2, "problem": None}]


def test_every_unreadable_input_is_named_with_its_problem(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(_jsonl(TEXTS))
    txt = tmp_path / "notes.txt"
    txt.write_text("Just some plain text, not a corpus format kiln clean reads.\n" * 20)
    html = tmp_path / "page.html"
    html.write_text("<html><body><p>A page on its own, not in a WARC.</p></body></html>")
    garbage = tmp_path / "garbage.warc.gz"
    garbage.write_bytes(bytes(range(256)) * 40)
    warc = _warc_bytes(6)
    torn = tmp_path / "torn.warc.gz"
    start, end = _member_bounds(warc)[3]
    torn.write_bytes(warc[: (start + end) // 2])  # three records, then half of the fourth
    fake_gz = tmp_path / "fake.jsonl.gz"
    fake_gz.write_bytes(_jsonl(TEXTS))  # not gzipped at all
    not_jsonl = tmp_path / "prose.jsonl"
    not_jsonl.write_text("this is prose\nnot json lines\n")
    inputs = [good, txt, html, garbage, torn, fake_gz, not_jsonl]

    out = tmp_path / "out"
    stats = _clean(inputs, out)
    by_path = {Path(i["path"]).name: i for i in stats["inputs"]}
    assert list(by_path) == [p.name for p in inputs]
    assert by_path["good.jsonl"] == {"path": str(good), "documents": 2, "problem": None}
    for name in ("notes.txt", "page.html", "garbage.warc.gz", "fake.jsonl.gz", "prose.jsonl"):
        assert by_path[name]["documents"] == 0 and by_path[name]["problem"], by_path[name]
    assert "not a WARC/ARC, JSONL or Parquet file" in by_path["notes.txt"]["problem"]
    assert "not a WARC/ARC, JSONL or Parquet file" in by_path["page.html"]["problem"]
    assert "gzip" in by_path["fake.jsonl.gz"]["problem"]
    assert '"text"' in by_path["prose.jsonl"]["problem"]
    assert by_path["torn.warc.gz"]["documents"] == 3 and "malformed" in by_path["torn.warc.gz"]["problem"]
    assert json.loads((out / "stats.json").read_text())["inputs"] == stats["inputs"]

    rc, printed, err = run_cli(["clean", *map(str, inputs), "--out", str(tmp_path / "o2"), "--quiet", "--workers", "1"])
    assert rc == 0, err
    assert "6 of 7 input files had a problem:" in printed
    assert f"{txt}: 0 documents; not a WARC/ARC" in printed


def test_parquet_without_a_text_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": TEXTS}), good)
    no_text = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"body": TEXTS, "lang": ["en", "en"]}), no_text)
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), ints)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\x00" * 100)
    stats = _clean([good, no_text, ints, broken], tmp_path / "out")
    problems = {Path(i["path"]).name: i["problem"] for i in stats["inputs"]}
    assert problems["good.parquet"] is None and stats["documents_out"] == 2
    assert problems["no_text.parquet"] == "no 'text' column (its columns: body, lang)"
    assert problems["ints.parquet"] == "column 'text' holds int64, not strings"
    assert problems["broken.parquet"].startswith("not a readable Parquet file")
    assert stats["steps"][0]["dropped_by_reason"] == {}  # nothing dropped as "extract_empty"


def test_all_inputs_unreadable_is_a_one_line_error(tmp_path: Path) -> None:
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), ints)
    txt = tmp_path / "notes.txt"
    txt.write_text("plain text\n")
    rc, out, err = run_cli(["clean", str(ints), str(txt), "--out", str(tmp_path / "o"), "--quiet", "--workers", "1"])
    assert rc == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no input yielded a document" in err
    assert f"{ints}: column 'text' holds int64, not strings" in err and str(txt) in err


def test_a_broken_stage1_parquet_is_an_error_naming_it(tmp_path: Path) -> None:
    """Parquet read errors name the file, also where kiln reads its own intermediate shards."""
    from kiln.clean.documents_io import InputError, read_parquet_documents

    bad = tmp_path / "00000-x.parquet"
    bad.write_bytes(b"garbage, not parquet")
    try:
        list(read_parquet_documents(bad))
    except InputError as e:
        assert str(e).startswith(f"{bad}: not a readable Parquet file")
    else:
        raise AssertionError("no error")
