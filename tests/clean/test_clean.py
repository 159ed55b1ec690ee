"""`kiln clean` with the real default pipeline, on real Common Crawl / wget WARC files and on damaged input."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import run_cli
from kiln.acquire.warc import IngestStats, iter_records
from kiln.acquire.warc_writer import RotatingWarcWriter
from kiln.clean import CleanConfig, run
from kiln.clean.registry import DEFAULT_STEPS
from kiln.tokenize.tokenize_corpus import TokenizeConfig, tokenize_corpus


def _kept(out: Path) -> list[dict]:
    rows: list[dict] = []
    for path in sorted(out.glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


@pytest.mark.shared
def test_default_pipeline_on_real_warc_files(shared_data: Path, tmp_path: Path) -> None:
    warcs = shared_data / "web" / "warc"
    out = tmp_path / "clean"
    stats = run(CleanConfig(inputs=[str(warcs)], out_dir=str(out), workers=2, quiet=True)).to_json()

    assert [s["name"] for s in stats["steps"]] == [
        "url_filter", "extract", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb",
        "exact_dedup", "minhash_dedup", "pii",
    ]  # fmt: skip
    assert len(DEFAULT_STEPS) == len(stats["steps"])
    # Every HTML response of the WARC files (read independently) enters the pipeline, and no document is
    # lost between steps: each step sees exactly what the previous one kept.
    html = 0
    for path in sorted(warcs.glob("*.warc.gz")):
        html += sum(1 for _ in iter_records(path, IngestStats(), ("response",), ["text/html", "application/xhtml"]))
    assert stats["steps"][0]["in"] == html > 50
    for earlier, later in zip(stats["steps"], stats["steps"][1:], strict=False):
        assert later["in"] == earlier["kept"]
        assert earlier["in"] == earlier["kept"] + earlier["dropped"]
    by_name = {s["name"]: s for s in stats["steps"]}
    assert by_name["langid"]["dropped_by_reason"].get("lang_ja", 0) > 10  # the ClueWeb09 Japanese pages

    kept = _kept(out)
    assert len(kept) == stats["documents_out"] > 10
    assert all(r["language"] == "en" and r["language_score"] > 0.65 for r in kept)
    assert all(r["text"].strip() and r["url"].startswith("http") for r in kept)
    assert len({r["text"] for r in kept}) == len(kept)  # deduplicated
    samples = json.loads((out / "dropped_samples.json").read_text())
    assert {s["step"] for s in samples} >= {"langid", "gopher_quality"}

    # The output is kiln tokenize's input as it is (the hidden stage-1 shards are not read twice).
    tok = tokenize_corpus(
        TokenizeConfig(inputs=[str(out)], out_dir=str(tmp_path / "tokens"), tokenizer="byte", val_fraction=0.1),
        progress=False,
    )
    assert tok["documents"] == len(kept)
    assert tok["text_bytes"] == sum(len(r["text"].encode()) for r in kept)


def _warc(path: Path, pages: list[tuple[str, bytes]]) -> Path:
    with RotatingWarcWriter(path.parent / "w", prefix=path.stem) as w:
        for url, body in pages:
            w.write_response(url, 200, "OK", [("Content-Type", "text/html")], body)
        written = w.path
    shutil.move(written, path)
    return path


PARAGRAPHS = [
    "The river rises in the hills above the village and runs for about forty miles before it reaches the sea."
    " In spring the water is cold and fast, and the farmers along its banks wait for the floods to pass.",
    "Most families in the valley have fished in the river for generations. They know where the trout hide under"
    " the willows, and they teach their children to read the colour of the water after a storm.",
    "A stone bridge was built across the narrowest point in the eighteenth century. It still carries the old road"
    " to the market town, although heavy lorries now use the new crossing further downstream.",
    "Visitors come in the summer to walk the footpath that follows the water from the source to the estuary."
    " The walk takes four days, and there are small inns where travellers can rest and eat.",
    "Scientists from the university measure the quality of the water every month. Their reports show that the"
    " river is cleaner than it was thirty years ago, thanks to better treatment of waste from the farms.",
    "In the evening the light falls slowly over the meadows, and herons stand motionless in the shallows."
    " Many people say that this is the most peaceful place they have ever known.",
]


def _page(paragraphs: list[str]) -> str:
    return (
        "<html><head><title>t</title></head><body><nav>Home | About | Contact</nav><article><h1>On rivers</h1>"
        + "".join(f"<p>{p}</p>" for p in paragraphs)
        + "</article></body></html>"
    )


PAGE = _page(PARAGRAPHS).encode()
# Half the text (so not a near-duplicate of PAGE), in Latin-1 with an accented word, no charset declared.
LATIN1_PAGE = _page(PARAGRAPHS[:3]).replace("the valley", "the vallée").encode("latin-1")


def test_damaged_and_odd_input_is_dropped_with_reasons_and_the_run_goes_on(tmp_path: Path) -> None:
    good = _warc(tmp_path / "good.warc.gz", [("http://a.example/1", PAGE)])
    odd = _warc(
        tmp_path / "odd.warc.gz",
        [
            ("http://a.example/empty", b""),
            ("http://a.example/binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20),
            ("http://a.example/latin1", LATIN1_PAGE),
            ("http://a.example/copy", PAGE),  # an exact copy of good.warc.gz's page
        ],
    )
    torn = tmp_path / "torn.warc.gz"
    data = good.read_bytes()
    torn.write_bytes(data + data[: len(data) // 2])  # one whole record, then half of one
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.warc.gz"
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write(b"this is not a WARC file at all\n" * 50)
    junk.write_bytes(buf.getvalue())

    out = tmp_path / "out"
    inputs = [str(p) for p in (good, odd, torn, empty, junk)]
    stats = run(CleanConfig(inputs=inputs, out_dir=str(out), workers=1, quiet=True)).to_json()
    by_name = {s["name"]: s for s in stats["steps"]}
    assert by_name["extract"]["dropped_by_reason"].get("extract_empty", 0) >= 1
    assert by_name["extract"]["dropped_by_reason"].get("extract_binary", 0) == 1
    assert by_name["exact_dedup"]["dropped_by_reason"] == {"exact_duplicate": 2}  # the copy and the torn file's
    kept = _kept(out)
    assert [r["url"] for r in kept] == ["http://a.example/1", "http://a.example/latin1"]
    assert "vallée" in kept[1]["text"]


def test_cli_prints_the_table_and_errors_are_one_line(tmp_path: Path) -> None:
    page = tmp_path / "in.warc.gz"
    _warc(page, [("http://a.example/1", PAGE)])
    rc, out, err = run_cli(["clean", str(page), "--out", str(tmp_path / "o"), "--quiet", "--workers", "1"])
    assert rc == 0, err
    assert "extract" in out and "documents kept" in out
    rc, out, err = run_cli(["clean", str(tmp_path / "missing.warc.gz"), "--out", str(tmp_path / "p"), "--quiet"])
    assert rc == 2 and err.count("\n") == 1 and "not found" in err
    config = tmp_path / "bad.toml"
    config.write_text('[[steps]]\nname = "nope"\n')
    rc, out, err = run_cli(["clean", str(page), "--out", str(tmp_path / "q"), "--config", str(config), "--quiet"])
    assert rc == 2 and "unknown step" in err


def test_the_c4_step_uses_fineweb_setting_unless_told_otherwise() -> None:
    from kiln.clean.registry import build_step

    assert build_step({"name": "c4"}).filter_no_terminal_punct is False  # FineWeb keeps unpunctuated lines
    assert build_step({"name": "c4", "filter_no_terminal_punct": True}).filter_no_terminal_punct is True


def test_warc_charset_parameter_is_read_in_any_case(tmp_path: Path) -> None:
    from kiln.clean.documents_io import read_warc_documents

    path = tmp_path / "iis.warc.gz"
    with RotatingWarcWriter(tmp_path / "w", prefix="iis") as w:
        for i, ct in enumerate(["text/html; Charset=ISO-8859-1", 'text/html; CHARSET="utf-8"', "text/html"]):
            w.write_response(f"http://a.example/{i}", 200, "OK", [("Content-Type", ct)], LATIN1_PAGE)
        written = w.path
    shutil.move(written, path)
    docs = list(read_warc_documents(path))
    assert [d.metadata.get("charset") for d in docs] == ["ISO-8859-1", "utf-8", None]


def test_one_extraction_worker_serves_every_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one process, the shards share one extraction worker (a fork and warm-up per shard cost more than a
    small shard's pages); none is left running after the run."""
    import multiprocessing as mp

    from kiln.clean import extract

    starts: list[int] = []
    real_start = extract.ExtractWorker._start

    def counting_start(self: extract.ExtractWorker):  # type: ignore[no-untyped-def]
        starts.append(1)
        return real_start(self)

    monkeypatch.setattr(extract.ExtractWorker, "_start", counting_start)
    inputs = [str(_warc(tmp_path / f"{i}.warc.gz", [(f"http://a.example/{i}", PAGE)])) for i in range(3)]
    stats = run(CleanConfig(inputs=inputs, out_dir=str(tmp_path / "o"), workers=1, quiet=True)).to_json()
    assert stats["steps"][1]["name"] == "extract" and stats["steps"][1]["kept"] == 3
    assert starts == [1]
    assert [p for p in mp.active_children() if p.name == "kiln-extract"] == []
