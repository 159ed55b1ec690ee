"""`kiln ingest`: reading WARC/WET/WAT/ARC files with kiln.acquire.warc, checked against warcio as the reference.

The real Common Crawl / wget / clueweb samples in ../shared/data/web/warc must read exactly as warcio reads
them; hand-made broken files (torn gzip, garbage, wrong lengths, random bytes, ARC) must never end a run:
the good records come through and each bad stretch is counted once.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator as WarcioIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from helpers import SHARED_DATA, run_cli
from kiln.acquire import IngestConfig, IngestSummary, run_ingest
from kiln.acquire.warc import IngestStats, WarcRecord, iter_records
from kiln.config import load_config, to_dict

WARC_DIR = SHARED_DATA / "web" / "warc"
REAL_FILES = sorted(p.name for p in WARC_DIR.iterdir()) if WARC_DIR.is_dir() else ["(shared data absent)"]
CLUEWEB = "clueweb09-ja-quirk.warc.gz"


# --- the reference: warcio ----------------------------------------------------------------------------


def _strip_brackets(url: str | None) -> str:
    url = url or ""
    return url[1:-1] if url.startswith("<") and url.endswith(">") else url


def warcio_records(path: Path) -> list[dict]:
    """Every record as warcio reads it: type, URL, offset, and the decoded body (content_stream)."""
    out = []
    with open(path, "rb") as f:
        it = WarcioIterator(f, arc2warc=True)
        for rec in it:
            http = rec.http_headers
            out.append(
                {
                    "type": rec.rec_type,
                    "url": _strip_brackets(rec.rec_headers.get_header("WARC-Target-URI")),
                    "body": rec.content_stream().read(),
                    "content_type": http.get_header("Content-Type") if http else None,
                    "offset": it.get_record_offset(),
                }
            )
    return out


def read(path: Path, **kw) -> tuple[list[WarcRecord], IngestStats]:
    stats = IngestStats()
    return list(iter_records(path, stats, **kw)), stats


# --- real files ----------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_matches_warcio(shared_data, name):
    """Every record type, URL and offset as warcio reports; bodies equal for all but request/revisit
    (whose block kiln keeps whole, HTTP head and all)."""
    path = shared_data / "web" / "warc" / name
    ref = warcio_records(path)
    ours, stats = read(path, record_types=None)
    assert stats.skipped_malformed == 0, stats.problems
    assert stats.records == stats.kept == len(ref) > 0
    assert stats.by_type == Counter(r["type"] for r in ref)
    assert [(r.record_type, r.url, r.offset) for r in ours] == [(r["type"], r["url"], r["offset"]) for r in ref]
    for mine, theirs in zip(ours, ref, strict=True):
        if mine.record_type not in ("request", "revisit"):
            assert mine.body == theirs["body"], (mine.record_type, mine.url)
        assert mine.source == str(path)


@pytest.mark.shared
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_responses_by_default(shared_data, name):
    """The default keeps response records only: the same count, URLs and bodies as warcio's responses."""
    path = shared_data / "web" / "warc" / name
    ref = [r for r in warcio_records(path) if r["type"] == "response"]
    ours, stats = read(path)
    assert [r.url for r in ours] == [r["url"] for r in ref]
    assert [r.body for r in ours] == [r["body"] for r in ref]
    assert all(r.http_status == 200 and r.http_headers for r in ours)
    assert [r.content_type for r in ours] == [r["content_type"] for r in ref]
    assert stats.kept == len(ref)
    assert stats.records == len(warcio_records(path))  # everything is read (and counted by type)


@pytest.mark.shared
def test_wet_gives_conversion_text_and_wat_metadata_json(shared_data):
    d = shared_data / "web" / "warc"
    wet, stats = read(d / "whirlwind.warc.wet.gz", record_types=["conversion"])
    assert stats.by_type == {"warcinfo": 1, "conversion": 1} and len(wet) == 1
    text = wet[0].body.decode("utf-8")
    assert wet[0].content_type == "text/plain" and wet[0].url == "https://an.wikipedia.org/wiki/Escopete"
    assert "Escopete" in text and "<" not in text[:200]
    assert wet[0].http_status is None and wet[0].http_headers is None

    wat, _ = read(d / "whirlwind.warc.wat.gz", record_types=["metadata"])
    assert len(wat) == 1 and wat[0].content_type == "application/json"
    envelope = json.loads(wat[0].body)["Envelope"]
    assert envelope["WARC-Header-Metadata"]["WARC-Target-URI"] == "https://an.wikipedia.org/wiki/Escopete"


@pytest.mark.shared
def test_clueweb_quirk_file_reads_like_warcio(shared_data):
    """WARC/0.18, a WARC-Date that is not a date, HTTP heads ending in bare LF and a Content-Encoding: gzip
    over a body that is not gzipped: all 29 responses come through, no record is counted as malformed,
    exactly as warcio reads them. (FastWARC's strict HTTP parser would silently misread every head.)"""
    path = shared_data / "web" / "warc" / CLUEWEB
    ref = [r for r in warcio_records(path) if r["type"] == "response"]
    ours, stats = read(path)
    assert len(ours) == len(ref) == 29 and stats.skipped_malformed == 0
    assert [r.body for r in ours] == [r["body"] for r in ref]
    first = ours[0]
    assert first.date == "2008-10-294T05:21:46-0700"  # kept as written
    assert first.body.startswith(b"<html>\n<head>") and first.content_type == "text/html; charset=EUC-JP"
    names = [k for k, _ in first.http_headers]
    assert "X-Crawler-Content-Encoding" in names and "Content-Encoding" not in names
    assert dict(first.http_headers)["Content-Length"] == str(len(first.body))


@pytest.mark.shared
def test_content_type_filter_on_real_files(shared_data):
    d = shared_data / "web" / "warc"
    for name in ("wget-sample-0000.warc.gz", "cc-main-2020-34-excerpt.warc.gz"):
        ref = [r for r in warcio_records(d / name) if r["type"] == "response"]
        html, _ = read(d / name, content_types=["text/html"])
        assert [r.url for r in html] == [r["url"] for r in ref if r["content_type"].startswith("text/html")]
        none, stats = read(d / name, content_types=["application/pdf"])
        assert none == [] and stats.records == len(warcio_records(d / name)) and stats.kept == 0


# --- crafted files ---------------------------------------------------------------------------------------


def _record(i: int, gz: bool = True, content_type: str = "text/html; charset=utf-8") -> bytes:
    """One warcio-written response record (its own gzip member when gz), with digests."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    body = _body(i)
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    rec = writer.create_warc_record(
        f"http://example.com/{i}",
        "response",
        payload=io.BytesIO(body),
        length=len(body),
        http_headers=http,
        warc_headers_dict={"WARC-Date": "2024-01-02T03:04:05Z"},
    )
    writer.write_record(rec)
    return buf.getvalue()


def _body(i: int) -> bytes:
    return f"<p>page {i}</p>".encode() * 40


def _urls(records: list[WarcRecord]) -> list[str]:
    return [r.url for r in records]


def _ids(records: list[WarcRecord]) -> list[int]:
    return [int(r.url.rsplit("/", 1)[1]) for r in records]


@pytest.mark.parametrize("gz", [True, False])
def test_clean_crafted_file(tmp_path, gz):
    path = tmp_path / ("ok.warc.gz" if gz else "ok.warc")
    path.write_bytes(b"".join(_record(i, gz) for i in range(4)))
    ours, stats = read(path)
    assert _ids(ours) == [0, 1, 2, 3] and [r.body for r in ours] == [_body(i) for i in range(4)]
    assert stats.skipped_malformed == 0 and stats.problems == []
    assert [r.offset for r in ours] == [r["offset"] for r in warcio_records(path)]
    assert ours[0].date == "2024-01-02T03:04:05Z" and ours[0].record_id.startswith("<urn:uuid:")
    assert ours[0].warc_headers["WARC-Type"] == "response"


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file_keeps_earlier_records_and_counts_the_torn_one(tmp_path, gz):
    recs = [_record(i, gz) for i in range(4)]
    cut = len(recs[0]) + len(recs[1]) + len(recs[2]) // 2
    path = tmp_path / ("torn.warc.gz" if gz else "torn.warc")
    path.write_bytes(b"".join(recs)[:cut])
    ours, stats = read(path)
    assert _ids(ours) == [0, 1]
    assert stats.records == 3 and stats.skipped_malformed == 1
    assert f"offset {len(recs[0]) + len(recs[1])}" in stats.problems[0] and str(path) in stats.problems[0]


def test_every_cut_of_a_gzipped_file(tmp_path):
    """Cut anywhere: the records before the cut come through whole, and a cut inside a record (even in its
    gzip header, where FastWARC itself notices nothing) is counted once."""
    recs = [_record(i) for i in range(3)]
    data = b"".join(recs)
    ends = [sum(len(r) for r in recs[: i + 1]) for i in range(3)]
    path = tmp_path / "cut.warc.gz"
    for cut in range(1, len(data) + 1):
        path.write_bytes(data[:cut])
        ours, stats = read(path)
        whole = sum(e <= cut for e in ends)
        assert _ids(ours) == list(range(whole)), cut
        assert [r.body for r in ours] == [_body(i) for i in range(whole)], cut
        assert stats.skipped_malformed == (0 if cut in ends else 1), (cut, stats.problems)


def test_every_cut_of_a_plain_file(tmp_path):
    """As above for plain WARC; a cut in the CRLFs after a complete body loses nothing and is not counted."""
    recs = [_record(i, gz=False) for i in range(3)]
    data = b"".join(recs)
    ends = [sum(len(r) for r in recs[: i + 1]) for i in range(3)]
    path = tmp_path / "cut.warc"
    for cut in range(1, len(data) + 1):
        path.write_bytes(data[:cut])
        ours, stats = read(path)
        whole = sum(e - 4 <= cut for e in ends)
        assert _ids(ours) == list(range(whole)), cut
        assert stats.skipped_malformed == (0 if any(e - 4 <= cut <= e for e in ends) else 1), cut


@pytest.mark.parametrize("gz", [True, False])
def test_garbage_between_records_is_skipped_and_counted(tmp_path, gz):
    recs = [_record(i, gz) for i in range(3)]
    path = tmp_path / ("junk.warc.gz" if gz else "junk.warc")
    path.write_bytes(recs[0] + b"this is not a record\x00\xff" * 20 + recs[1] + recs[2])
    ours, stats = read(path)
    # Record 0 is followed by junk, so its length is suspect: its block digest vouches for it.
    assert _ids(ours) == [0, 1, 2] and [r.body for r in ours] == [_body(i) for i in range(3)]
    assert stats.skipped_malformed == 1 and "offset 0" in stats.problems[0]


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("delta", [-100, +1000])
def test_wrong_content_length_drops_that_record_only(tmp_path, gz, delta):
    """Too short leaves the rest of its body behind, too long swallows the next record: either way the bad
    record (whose digest no longer matches) is counted, and reading resumes at the next record."""
    plain = _record(1, gz=False)
    head, _, rest = plain.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    n = next(int(x.split(b": ")[1]) for x in lines if x.startswith(b"Content-Length"))
    lines = [b"Content-Length: %d" % (n + delta) if x.startswith(b"Content-Length") else x for x in lines]
    bad = b"\r\n".join(lines) + b"\r\n\r\n" + rest
    path = tmp_path / ("len.warc.gz" if gz else "len.warc")
    path.write_bytes(_record(0, gz) + (gzip.compress(bad) if gz else bad) + _record(2, gz) + _record(3, gz))
    ours, stats = read(path)
    assert _ids(ours) == [0, 2, 3] and [r.body for r in ours] == [_body(i) for i in (0, 2, 3)]
    assert stats.skipped_malformed == 1 and "record boundary" in stats.problems[0]


def test_corrupt_gzip_member_in_the_middle(tmp_path):
    recs = [_record(i) for i in range(4)]
    data = bytearray(b"".join(recs))
    start = len(recs[0]) + len(recs[1])
    data[start + 30 : start + 50] = bytes(20)  # inside record 2's deflate stream
    path = tmp_path / "corrupt.warc.gz"
    path.write_bytes(bytes(data))
    ours, stats = read(path)
    assert _ids(ours) == [0, 1, 3] and stats.skipped_malformed == 1


def test_bit_flips_in_a_gzipped_file_never_raise_or_pass_corrupt_bodies(tmp_path):
    """gzip's CRC catches a flipped bit: whatever is kept is an original body, and nothing raises."""
    data = b"".join(_record(i) for i in range(3))
    rng = random.Random(0)
    path = tmp_path / "flip.warc.gz"
    originals = {_body(i) for i in range(3)}
    for _ in range(60):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        ours, stats = read(path)
        assert {r.body for r in ours} <= originals
        assert len(ours) + stats.skipped_malformed >= 2  # at most one record lost per flip, and it is counted


@pytest.mark.parametrize(
    ("name", "content"),
    [("random.warc.gz", random.Random(1).randbytes(5000)), ("notes.txt", b"hello world\n" * 50)],
)
def test_non_warc_file_is_counted_not_raised(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    ours, stats = read(path)
    assert ours == [] and stats.records == 0 and stats.skipped_malformed == 1
    assert "not a WARC or ARC file" in stats.problems[0] and name in stats.problems[0]


def test_empty_file_is_an_empty_archive(tmp_path):
    path = tmp_path / "empty.warc.gz"
    path.write_bytes(b"")
    ours, stats = read(path)
    assert ours == [] and stats.files == 1 and stats.records == 0 and stats.skipped_malformed == 0


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.warc\.gz"):
        read(tmp_path / "nope.warc.gz")


def test_unknown_record_type_is_a_value_error(tmp_path):
    path = tmp_path / "ok.warc.gz"
    path.write_bytes(_record(0))
    with pytest.raises(ValueError, match="reponse"):
        read(path, record_types=["reponse"])


def test_content_type_filter_and_types(tmp_path):
    path = tmp_path / "mixed.warc.gz"
    path.write_bytes(_record(0) + _record(1, content_type="application/json") + _record(2, content_type="TEXT/HTML"))
    html, stats = read(path, content_types=["text/html"])
    assert _ids(html) == [0, 2] and stats.records == 3 and stats.kept == 2
    everything, _ = read(path, content_types=None)
    assert _ids(everything) == [0, 1, 2] and everything[1].content_type == "application/json"
    assert _ids(read(path, content_types=["application/"])[0]) == [1]
    assert read(path, record_types=["conversion"])[0] == []


def test_chunked_and_gzip_bodies_are_decoded_like_warcio(tmp_path):
    page = b"<html><body>" + b"decoded text " * 200 + b"</body></html>"
    gz_page = gzip.compress(page)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (gz_page[:100], gz_page[100:])) + b"0\r\n\r\n"
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")]
    rec = writer.create_warc_record(
        "http://example.com/enc",
        "response",
        payload=io.BytesIO(chunked),
        length=len(chunked),
        http_headers=StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1"),
    )
    writer.write_record(rec)
    path = tmp_path / "enc.warc.gz"
    path.write_bytes(buf.getvalue())
    (ours,), _ = read(path)
    assert ours.body == page == warcio_records(path)[0]["body"]
    assert dict(ours.http_headers) == {
        "Content-Type": "text/html",
        "X-Crawler-Content-Encoding": "gzip",
        "X-Crawler-Transfer-Encoding": "chunked",
        "Content-Length": str(len(page)),
    }


# --- ARC -------------------------------------------------------------------------------------------------


def _arc_record(url: str, date: str, ctype: str, block: bytes) -> bytes:
    return f"{url} 10.0.0.1 {date} {ctype} {len(block)}\n".encode() + block + b"\n"


def _arc_members() -> list[bytes]:
    version = b"1 0 kiln-test\nURL IP-address Archive-date Content-type Archive-length\n"
    pages = [(f"http://example.com/arc{i}", f"<p>arc page {i}</p>".encode() * 5) for i in range(3)]
    recs = [_arc_record("filedesc://test.arc", "20240102030405", "text/plain", version)]
    for i, (url, body) in enumerate(pages):
        block = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + body
        recs.append(_arc_record(url, f"2024010203041{i}", "text/html", block))
    return recs


@pytest.mark.parametrize("gz", [True, False])
def test_arc_file_reads_like_warcio(tmp_path, gz):
    members = _arc_members()
    path = tmp_path / ("old.arc.gz" if gz else "old.arc")
    path.write_bytes(b"".join(gzip.compress(m) for m in members) if gz else b"".join(members))
    ref = [r for r in warcio_records(path) if r["type"] == "response"]
    ours, stats = read(path)
    assert stats.by_type == {"warcinfo": 1, "response": 3} and stats.skipped_malformed == 0
    assert [(r.url, r.body, r.offset) for r in ours] == [(r["url"], r["body"], r["offset"]) for r in ref]
    assert ours[0].body == b"<p>arc page 0</p>" * 5 and ours[0].date == "2024-01-02T03:04:10Z"
    assert ours[0].http_status == 200 and ours[0].content_type == "text/html"


def test_torn_arc_file_keeps_earlier_records(tmp_path):
    members = _arc_members()
    data = b"".join(members)
    path = tmp_path / "torn.arc"
    path.write_bytes(data[: len(data) - 20])  # inside the last record's body
    ours, stats = read(path)
    assert _urls(ours) == ["http://example.com/arc0", "http://example.com/arc1"]
    assert stats.skipped_malformed == 1 and "truncated" in stats.problems[0]


# --- ingest() and the CLI ------------------------------------------------------------------------------


def _written(out: Path) -> list[dict]:
    return [r for f in sorted(out.glob("ingest-*.warc.gz")) for r in warcio_records(f)]


def test_ingest_writes_kept_records_and_stats(tmp_path):
    good = tmp_path / "good.warc.gz"
    good.write_bytes(b"".join(_record(i) for i in range(3)) + _record(3, content_type="image/png"))
    torn = tmp_path / "torn.warc"
    torn.write_bytes(_record(4, gz=False) + _record(5, gz=False)[:300])
    out = tmp_path / "out"
    stats = run_ingest(IngestConfig(inputs=[str(good), str(torn)], out_dir=str(out), quiet=True))
    written = _written(out)
    assert [w["url"] for w in written] == [f"http://example.com/{i}" for i in (0, 1, 2, 4)]
    assert [w["body"] for w in written] == [_body(i) for i in (0, 1, 2, 4)]
    assert stats.kept == 4 and stats.records == 6 and stats.skipped_malformed == 1 and stats.files == 2
    saved = json.loads((out / "ingest-stats.json").read_text())
    assert saved["kept"] == 4 and saved["skipped_malformed"] == 1 and saved["by_type"] == {"response": 6}
    assert saved["outputs"] == ["ingest-00000.warc.gz"] and len(saved["problems"]) == 1
    with open(out / "ingest-00000.warc.gz", "rb") as f:
        first = next(iter(WarcioIterator(f)))
        assert first.rec_headers.get_header("WARC-Kiln-Source") == "good.warc.gz"
        assert first.rec_headers.get_header("WARC-Date") == "2024-01-02T03:04:05Z"


def test_ingest_rotates_output_files(tmp_path):
    src = tmp_path / "many.warc.gz"
    src.write_bytes(b"".join(_record(i) for i in range(10)))
    out = tmp_path / "out"
    run_ingest(IngestConfig(inputs=[str(src)], out_dir=str(out), warc_mb=1000 / (1 << 20)))
    assert len(list(out.glob("ingest-*.warc.gz"))) > 1
    assert [w["url"] for w in _written(out)] == [f"http://example.com/{i}" for i in range(10)]


@pytest.mark.shared
def test_ingest_real_files_round_trip(shared_data, tmp_path):
    d = shared_data / "web" / "warc"
    names = ["cc-main-2020-34-excerpt.warc.gz", CLUEWEB, "wget-sample-0001.warc.gz", "whirlwind.warc.wet.gz"]
    out = tmp_path / "out"
    inputs = [str(d / n) for n in names]
    stats = run_ingest(IngestConfig(inputs=inputs, out_dir=str(out), type=["response", "conversion"]))
    expected = [
        r
        for n in names
        for r in warcio_records(d / n)
        if r["type"] == "conversion" or (r["type"] == "response" and r["content_type"].startswith("text/html"))
    ]
    written = _written(out)
    assert [(w["type"], w["url"], w["body"]) for w in written] == [(r["type"], r["url"], r["body"]) for r in expected]
    assert stats.kept == len(expected) and stats.skipped_malformed == 0
    with open(sorted(out.glob("ingest-*.warc.gz"))[0], "rb") as f:
        headers = [r.rec_headers for r in WarcioIterator(f)]
    quirk = [h for h in headers if h.get_header("WARC-Kiln-Source") == CLUEWEB]
    assert len(quirk) == 29  # its non-date WARC-Date is replaced, and kept beside
    assert {h.get_header("WARC-Kiln-Original-Date") for h in quirk} == {"2008-10-294T05:21:46-0700"}


def test_cli_ingest_prints_counts(tmp_path):
    src = tmp_path / "a.warc.gz"
    src.write_bytes(_record(0) + b"junk" * 10 + _record(1))
    rc, out, err = run_cli(["ingest", str(src), "--out", str(tmp_path / "out")])
    assert rc == 0, err
    assert "1 files, 2 records read, 2 kept, 1 skipped as malformed" in out
    assert "first problem: " in out and "a.warc.gz at offset 0" in out and "by type: response 2" in out
    rc, out, _ = run_cli(["ingest", str(src), "--out", str(tmp_path / "o2"), "--type", "all", "--quiet"])
    assert rc == 0 and len(out.strip().splitlines()) == 1


def test_cli_ingest_missing_file_is_one_line_exit_2(tmp_path):
    rc, out, err = run_cli(["ingest", str(tmp_path / "missing.warc.gz"), "--out", str(tmp_path / "out")])
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [f"kiln ingest: error: no such file: {tmp_path / 'missing.warc.gz'}"]
    assert not (tmp_path / "out").exists()


# --- the stage contract -----------------------------------------------------------------------------------


def test_run_renders_what_the_command_prints_and_leaves_its_config(tmp_path):
    """`run_ingest`'s summary renders the lines `kiln ingest` prints (one line with quiet), is ingest-stats.json,
    and the run leaves kiln-ingest.toml, which loads back to the config it ran with."""
    src = tmp_path / "a.warc.gz"
    src.write_bytes(_record(0) + b"junk" * 10 + _record(1) + _record(2, content_type="image/png"))
    for quiet in (False, True):
        cli_out, run_out = tmp_path / f"cli-{quiet}", tmp_path / f"run-{quiet}"
        rc, printed, err = run_cli(["ingest", str(src), "--out", str(cli_out), *(["--quiet"] if quiet else [])])
        assert rc == 0, err
        config = IngestConfig(inputs=[str(src)], out_dir=str(run_out), quiet=quiet)
        summary = run_ingest(config)
        assert isinstance(summary, IngestSummary) and summary.kept == 2
        assert summary.render().replace(str(run_out), str(cli_out)) + "\n" == printed
        assert len(summary.render().splitlines()) == (1 if quiet else 3)
        assert json.loads((run_out / "ingest-stats.json").read_text()) == summary.to_json()
        assert summary.to_json() == json.loads((cli_out / "ingest-stats.json").read_text())
        assert to_dict(load_config(IngestConfig, run_out / "kiln-ingest.toml")) == to_dict(config)
    everything = run_ingest(IngestConfig(inputs=[str(src)], out_dir=str(tmp_path / "all"), content_type=["all"]))
    assert everything.kept == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("inputs", [], "inputs"),
        ("type", ["responce"], "type: unknown WARC record type"),
        ("type", [], "type"),
        ("content_type", [" "], "content_type"),
        ("warc_mb", 0.0, "warc_mb"),
    ],
)
def test_bad_settings_name_the_field_and_write_nothing(field, value, message, tmp_path):
    src = tmp_path / "a.warc.gz"
    src.write_bytes(_record(0))
    config = IngestConfig(inputs=[str(src)], out_dir=str(tmp_path / "out"))
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        run_ingest(config)
    assert not (tmp_path / "out").exists()
