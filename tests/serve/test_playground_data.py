"""The Data tab and its routes, against a real `kiln serve` whose data_dir holds the output of a real `kiln clean`
of two of the bundled WARC samples (run once for the module): the funnel must equal stats.json, the dropped samples
and the search must page through what clean wrote, a document must show beside its WARC record, and names from the
URL must never reach outside data_dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from browser_support import needs_chromium, open_page
from playwright.sync_api import expect
from serve_support import run_server

from helpers import run_cli
from kiln.serve import ServeConfig

WARCS = Path(__file__).resolve().parents[2] / "src" / "kiln" / "assets" / "quickstart" / "warc"
OUTPUT = "web/clean"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    inputs = [str(WARCS / "wget-sample-0000.warc.gz"), str(WARCS / "whirlwind.warc.gz")]
    rc, out, err = run_cli(["clean", *inputs, "--out", str(root / OUTPUT), "--workers", "1"])
    assert rc == 0, out + err
    return root


@pytest.fixture(scope="module")
def served(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with run_server(tmp_path_factory.mktemp("no-models"), data_dir=data_dir) as running:
        yield running


def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(server.base_url + path, params=params, timeout=30)


def stats(data_dir: Path) -> dict:
    return json.loads((data_dir / OUTPUT / "stats.json").read_text())


def kept(data_dir: Path) -> list[dict]:
    rows = []
    for shard in sorted((data_dir / OUTPUT).glob("*.parquet")):
        rows += [{**r, "shard": shard.name, "row": i} for i, r in enumerate(pq.read_table(shard).to_pylist())]
    return rows


# ---------------------------------------------------------------------------------------------------------- API


def test_outputs_and_stats_are_clean_s(served, data_dir: Path):
    (out,) = get(served, "/api/data/outputs").json()["outputs"]
    assert out["name"] == OUTPUT and out["documents_out"] == stats(data_dir)["documents_out"] > 0
    assert get(served, "/api/data/stats", output=OUTPUT).json()["stats"] == stats(data_dir)


def test_dropped_samples_page_and_filter(served, data_dir: Path):
    samples = json.loads((data_dir / OUTPUT / "dropped_samples.json").read_text())
    page = get(served, "/api/data/dropped", output=OUTPUT, offset=1, limit=2).json()
    assert page["total"] == len(samples) and page["items"] == samples[1:3]
    reason = samples[0]["reason"]
    only = get(served, "/api/data/dropped", output=OUTPUT, reason=reason, limit=100).json()
    assert only["items"] == [s for s in samples if s["reason"] == reason]
    past = get(served, "/api/data/dropped", output=OUTPUT, offset=10_000).json()
    assert past["items"] == [] and past["total"] == len(samples)


def test_search_pages_over_text_and_url(served, data_dir: Path):
    docs = kept(data_dir)
    word = "washington"
    want = [d for d in docs if word in d["text"].lower() or word in d["url"].lower()]
    assert want, "the sample has a document mentioning the word"
    page = get(served, "/api/data/documents", output=OUTPUT, q=word.upper(), limit=2).json()
    assert page["total"] == len(want) and not page["truncated"]
    assert [i["id"] for i in page["items"]] == [d["id"] for d in want[:2]]
    everything = get(served, "/api/data/documents", output=OUTPUT, limit=100).json()
    assert everything["total"] == len(docs)
    one = get(served, "/api/data/document", output=OUTPUT, shard=want[0]["shard"], row=want[0]["row"]).json()
    assert one["text"] == want[0]["text"] and one["metadata"]["source"] == "wget-sample-0000.warc.gz"


def test_a_document_s_warc_record_is_found(served, data_dir: Path):
    doc = kept(data_dir)[0]
    src = get(served, "/api/data/source", output=OUTPUT, shard=doc["shard"], row=doc["row"]).json()
    assert src["found"] and src["warc"] == "wget-sample-0000.warc.gz" and src["url"] == doc["url"]
    assert "<html" in src["html"].lower()


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/data/stats", {"output": "../data0"}, 404),
        ("/api/data/stats", {"output": "/etc"}, 404),
        ("/api/data/stats", {"output": "web"}, 404),
        ("/api/data/document", {"output": OUTPUT, "shard": "../stats.json", "row": 0}, 404),
        ("/api/data/document", {"output": OUTPUT, "shard": "stats.json", "row": 0}, 404),
        ("/api/data/document", {"output": OUTPUT, "shard": "00000-wget-sample-0000.parquet", "row": 10**6}, 404),
        ("/api/data/document", {"output": OUTPUT, "shard": "00000-wget-sample-0000.parquet", "row": -1}, 400),
        ("/api/data/dropped", {"output": OUTPUT, "limit": 0}, 400),
        ("/api/data/dropped", {"output": OUTPUT, "limit": 101}, 400),
        ("/api/data/dropped", {"output": OUTPUT, "offset": -1}, 400),
        ("/api/data/documents", {"output": OUTPUT, "q": "x" * 201}, 400),
        ("/api/data/documents", {}, 400),
    ],
)
def test_bad_names_and_params_are_refused(served, path, params, status):
    r = get(served, path, **params)
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_a_data_dir_that_is_not_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match=r"^data_dir: .* is not a directory"):
        ServeConfig(models=tmp_path, data_dir=tmp_path / "missing").validate()


def test_without_data_dir_the_tab_says_how(serve_models: Path):
    with run_server(serve_models) as plain:
        j = get(plain, "/api/data/outputs").json()
        assert j["outputs"] == [] and "data_dir" in j["hint"]
        r = get(plain, "/api/data/stats", output=".")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_data_dir"


# ------------------------------------------------------------------------------------------------------ browser


@needs_chromium
def test_funnel_equals_stats_json_and_samples_search_and_source_work(browser, served, data_dir: Path):
    with open_page(browser, served.base_url, "/#data") as page:
        rows = page.locator("#data-funnel tbody tr")
        expect(rows).to_have_count(len(stats(data_dir)["steps"]))
        for i, step in enumerate(stats(data_dir)["steps"]):
            row = rows.nth(i)
            assert row.get_attribute("data-step") == step["name"]
            for col in ("in", "kept", "dropped"):
                assert int(row.locator(f'td[data-col="{col}"]').inner_text()) == step[col]
            shown = {
                b.get_attribute("data-reason"): int(b.get_attribute("data-count"))
                for b in row.locator("button.reason").all()
            }
            assert shown == step["dropped_by_reason"]

        # a drop reason lists its samples
        samples = json.loads((data_dir / OUTPUT / "dropped_samples.json").read_text())
        reason = samples[0]["reason"]
        page.locator(f'button.reason[data-reason="{reason}"]').first.click()
        items = page.locator("#data-dropped li.doc")
        expect(items).to_have_count(sum(s["reason"] == reason for s in samples))
        assert {i.get_attribute("data-reason") for i in items.all()} == {reason}

        # search, then open a document: its text beside its WARC record
        want = [d for d in kept(data_dir) if "washington" in d["text"].lower() or "washington" in d["url"].lower()]
        page.fill("#data-search", "Washington")
        page.click('[data-testid="data-search-go"]')
        expect(page.get_by_test_id("data-docs-count")).to_contain_text(f"{len(want)} documents contain")
        expect(page.locator("#data-docs tbody tr")).to_have_count(min(len(want), 20))
        page.locator("#data-docs tbody tr").first.get_by_role("button", name="Open").click()
        expect(page.get_by_test_id("data-doc-source-note")).to_contain_text("wget-sample-0000.warc.gz")
        assert page.get_by_test_id("data-doc-text").inner_text().strip() == want[0]["text"].strip()
        assert "<html" in page.get_by_test_id("data-doc-source").inner_text().lower()


@needs_chromium
def test_the_tab_explains_how_to_set_data_dir(browser, serve_models: Path):
    with run_server(serve_models) as plain, open_page(browser, plain.base_url, "/#data") as page:
        expect(page.get_by_test_id("data-hint")).to_contain_text("data_dir=")
        expect(page.get_by_test_id("data-output")).to_be_disabled()
