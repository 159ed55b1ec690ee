"""The Dashboard tab and its routes, against a real `kiln serve` on a models directory holding real runs: the
session's two tiny models trained by `kiln train` (their metrics.jsonl and kiln-train.toml), `kiln eval` results of
both, and a sweep summary written by kiln's own SweepSummary. The curves read back from the page must equal
metrics.jsonl, a line appended the way the trainer appends one must show within seconds, and the leaderboard must
equal the results.json files."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_support import needs_chromium, open_page
from playwright.sync_api import expect
from serve_support import run_server

from helpers import run_cli
from kiln.plan.sweep_summary import SweepSummary
from kiln.train.metrics import MetricsLog

RUN = "pretrain/bpe-chat"
CURVES = ("train_loss", "val_loss", "val_bpb", "lr", "tokens_per_s", "mfu")


@pytest.fixture(scope="module")
def models(serve_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the session's runs (this module appends to their metrics), evaluated by `kiln eval`, and a sweep."""
    root = tmp_path_factory.mktemp("dashboard") / "models"
    shutil.copytree(serve_models / "bpe-chat", root / RUN)
    shutil.copytree(serve_models / "char", root / "char")
    for run in (RUN, "char"):
        out_dir = f"out_dir={root / run / 'eval'}"
        rc, out, err = run_cli(["eval", str(root / run), "copa", "arc_easy", "limit=6", out_dir, "--no-progress"])
        assert rc == 0, out + err
    sweep = root / "sweep"
    runs = [{"name": "1e12-d2", "budget": 1e12, "params": 120_000, "tokens": 1_400_000, "val_loss": 3.1}]
    SweepSummary(out_dir=str(sweep), runs=runs, plots=[str(sweep / "sweep.svg")]).write(sweep / "fit.json")
    (sweep / "sweep.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    return root


@pytest.fixture(scope="module")
def dash(models: Path) -> Iterator:
    with run_server(models) as running:
        yield running


def records(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl lines, skipping any that are not JSON (a test below writes one)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(server.base_url + path, params=params, timeout=30)


# ---------------------------------------------------------------------------------------------------------- API


def test_runs_are_found_with_their_stage(dash):
    runs = {r["name"]: r for r in get(dash, "/api/dashboard/runs").json()["runs"]}
    assert {RUN, "char"} <= set(runs)
    assert runs[RUN]["stage"] == "train"


def test_metrics_come_from_an_offset_and_a_partial_line_waits(dash, models: Path, tmp_path: Path):
    run_dir = models / "char"
    first = get(dash, "/api/dashboard/metrics", run="char").json()
    assert first["records"] == records(run_dir)
    assert first["next_offset"] == (run_dir / "metrics.jsonl").stat().st_size
    # nothing new: nothing travels
    again = get(dash, "/api/dashboard/metrics", run="char", offset=first["next_offset"]).json()
    assert again["records"] == [] and again["next_offset"] == first["next_offset"]
    with (run_dir / "metrics.jsonl").open("a") as f:  # a line still being written, then a broken one
        f.write('not json\n{"step": 99999, "train_lo')
    partial = get(dash, "/api/dashboard/metrics", run="char", offset=first["next_offset"]).json()
    assert partial["records"] == [] and partial["skipped"] == 1
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('ss": 1.5}\n')
    done = get(dash, "/api/dashboard/metrics", run="char", offset=partial["next_offset"]).json()
    assert done["records"] == [{"step": 99999, "train_loss": 1.5}]
    # an offset past the end (the file was rewritten by a resumed run) reads it again from the start
    reset = get(dash, "/api/dashboard/metrics", run="char", offset=10**9).json()
    assert reset["reset"] and reset["records"][0] == first["records"][0]


def test_config_is_the_runs_resolved_config(dash, models: Path):
    j = get(dash, "/api/dashboard/config", run=RUN).json()
    assert j["file"] == "kiln-train.toml"
    assert j["text"] == (models / RUN / "kiln-train.toml").read_text()


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/dashboard/metrics", {"run": "../../etc"}, 404),
        ("/api/dashboard/metrics", {"run": "/etc"}, 404),
        ("/api/dashboard/metrics", {"run": "char", "offset": -1}, 400),
        ("/api/dashboard/metrics", {"run": "char", "offset": "x"}, 400),
        ("/api/dashboard/metrics", {}, 400),
        ("/api/dashboard/config", {"run": f"{RUN}/checkpoints"}, 404),
        ("/api/dashboard/sweep_plot", {"sweep": "sweep", "file": "../char/kiln-train.toml"}, 400),
        ("/api/dashboard/sweep_plot", {"sweep": "..", "file": "sweep.svg"}, 404),
    ],
)
def test_bad_names_and_params_are_refused(dash, path, params, status):
    r = get(dash, path, **params)
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_leaderboard_equals_the_results_files(dash, models: Path):
    j = get(dash, "/api/dashboard/leaderboard").json()
    assert j["tasks"] == ["arc_easy", "copa"]
    rows = {r["name"]: r for r in j["rows"]}
    for run in (RUN, "char"):
        results = json.loads((models / run / "eval" / "results.json").read_text())
        row = rows[f"{run}/eval"]
        assert row["centred"] == pytest.approx(results["centred"])
        for task, scores in results["tasks"].items():
            assert row["tasks"][task]["acc"] == scores["acc"]
            assert row["tasks"][task]["acc_stderr"] == scores["acc_stderr"]


def test_sweep_summary_and_plot(dash):
    (sweep,) = get(dash, "/api/dashboard/sweeps").json()["sweeps"]
    assert sweep["name"] == "sweep" and sweep["plots"] == ["sweep.svg"] and sweep["runs"][0]["name"] == "1e12-d2"
    plot = get(dash, "/api/dashboard/sweep_plot", sweep="sweep", file="sweep.svg")
    assert plot.status_code == 200 and plot.headers["content-type"].startswith("image/svg+xml")
    assert "default-src 'none'" in plot.headers["content-security-policy"]


# ------------------------------------------------------------------------------------------------------ browser


def plotted(page, metric: str, run: str) -> list[list[float]]:
    sel = f'[data-testid="chart-{metric}"] [data-run="{run}"]'
    return json.loads(page.get_attribute(sel, "data-points"))


@needs_chromium
def test_curves_equal_metrics_jsonl_and_a_new_line_shows_live(browser, dash, models: Path):
    with open_page(browser, dash.base_url, "/#dashboard") as page:
        expect(page.locator(f'#dash-runs input[data-run="{RUN}"]')).to_be_checked()
        page.wait_for_selector(f'[data-testid="chart-train_loss"] [data-run="{RUN}"]')
        lines = records(models / RUN)
        for metric in CURVES:
            want = [[r["step"], r[metric]] for r in lines if isinstance(r.get(metric), int | float)]
            assert want, f"the test run logged no {metric}"
            assert plotted(page, metric, RUN) == want, metric  # exact: JSON carries doubles unchanged
        # the run's config is shown
        page.select_option("#dash-config-run", RUN)
        expect(page.get_by_test_id("dash-config")).to_contain_text("max_steps = 80")

        # a line appended as the trainer appends one (MetricsLog, resuming after the last step) shows within seconds
        step = lines[-1]["step"] + 1
        log = MetricsLog(models / RUN, resume_step=lines[-1]["step"], tensorboard=False)
        log.write({**lines[-1], "step": step, "train_loss": 0.125})
        log.close()
        t0 = time.monotonic()
        page.wait_for_function(
            "s => JSON.parse(document.querySelector(s).dataset.points).some(p => p[1] === 0.125)",
            arg=f'[data-testid="chart-train_loss"] [data-run="{RUN}"]',
            timeout=10_000,
        )
        assert time.monotonic() - t0 < 10
        assert plotted(page, "train_loss", RUN)[-1] == [step, 0.125]

        # two runs overlaid: checking another adds its line to the same chart
        page.check('#dash-runs input[data-run="char"]')
        page.wait_for_selector('[data-testid="chart-train_loss"] [data-run="char"]')
        want = [
            [r["step"], r["train_loss"]] for r in records(models / "char") if isinstance(r.get("train_loss"), float)
        ]
        assert plotted(page, "train_loss", "char") == want

        # by tokens rather than steps
        page.select_option("#dash-x", "tokens")
        lines = [r for r in records(models / "char") if isinstance(r.get("train_loss"), float) and "tokens" in r]
        want = [[r["tokens"], r["train_loss"]] for r in lines]
        assert plotted(page, "train_loss", "char") == want


@needs_chromium
def test_leaderboard_table_shows_the_results(browser, dash, models: Path):
    with open_page(browser, dash.base_url, "/#dashboard") as page:
        table = page.get_by_test_id("dash-leaderboard-table")
        expect(table).to_be_visible()
        results = json.loads((models / RUN / "eval" / "results.json").read_text())
        row = table.locator(f'tr[data-name="{RUN}/eval"]')
        for task, scores in results["tasks"].items():
            cell = row.locator(f'td[data-task="{task}"]')
            assert float(cell.get_attribute("data-acc")) == pytest.approx(scores["acc"])
            expect(cell).to_contain_text(f"±{scores['acc_stderr']:.3f}")
        expect(page.locator('[data-sweep="sweep"] img')).to_have_attribute("src", re.compile("^blob:"))
