"""`kiln eval` end to end on a saved checkpoint: results JSON, per-item files, bits per byte, one-line errors; and
the sanity anchor that a random-init model scores at each task's random baseline."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import run_cli
from kiln.eval.evaluate import evaluate_task
from kiln.eval.tasks import TASK_FILES, resolve_task
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import save_checkpoint
from kiln.tokenizer import ByteTokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=1, n_head=2, n_embd=16))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), model, ByteTokenizer())


def test_kiln_eval_writes_results_items_and_bpb(checkpoint, tmp_path) -> None:
    text = tmp_path / "doc.txt"
    text.write_text("To be, or not to be, that is the question. " * 10)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(
        ["eval", str(checkpoint), "copa", "wsc", "lambada", "limit=8", f"out_dir={out}", "--per-item", "num_fewshot=1",
         "--bpb", str(text), "bpb_stride=16", "--no-progress"]
    )  # fmt: skip
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == {"copa", "wsc", "lambada"}
    copa = results["tasks"]["copa"]
    assert copa["items"] == 8 and copa["num_fewshot"] == 1 and copa["random_baseline"] == 0.5 and 0 <= copa["acc"] <= 1
    assert copa["centred"] == pytest.approx((copa["acc"] - 0.5) / 0.5)
    assert results["centred"] == pytest.approx(sum(t["centred"] for t in results["tasks"].values()) / 3)
    items = [json.loads(line) for line in (out / "items" / "copa.jsonl").read_text().splitlines()]
    assert len(items) == 8 and sum(i["acc"] for i in items) / 8 == copa["acc"]
    assert results["tasks"]["lambada"]["perplexity"] > 1
    bpb = results["bits_per_byte"][str(text)]
    assert bpb["bytes"] == len(text.read_bytes()) - 1 and 6 < bpb["bits_per_byte"] < 10  # random over 256 bytes
    assert (out / "kiln-eval.toml").exists() and "centred (CORE-style)" in stdout


def test_unknown_task_and_missing_checkpoint_are_one_line_errors(checkpoint, tmp_path) -> None:
    rc, _, err = run_cli(["eval", str(checkpoint), "arc_eazy"])
    assert rc == 2 and "unknown task 'arc_eazy'" in err and "arc_easy" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["eval", str(tmp_path / "nope"), "copa"])
    assert rc == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore:.*truncated from the left")
def test_a_random_init_model_scores_at_the_random_baseline() -> None:
    """Centred acc_norm (random = 0) of a random byte-level model over the bundled slices, within 2 standard errors
    of 0 in aggregate, and each task within 3 (11 tasks at 2 sigma would fail one in three runs by chance alone).

    BoolQ is left out: every answer is " yes" or " no", so any fixed preference of a random model scores the label
    frequency (78% "yes" in the slice), not 50%. A random *model* is not a random *guesser* where labels are
    imbalanced; the baseline assumes balanced labels, as the Gauntlet's does."""
    tok = ByteTokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=256, n_layer=2, n_head=4, n_embd=64)).eval()
    scores, variances = [], []
    for name in TASK_FILES:
        if name in ("boolq", "lambada"):
            continue
        s = evaluate_task(model, tok, resolve_task(name, None)).scores
        scale = 1 - s["random_baseline"]
        z = (s["acc_norm"] - s["random_baseline"]) / s["acc_norm_stderr"]
        assert abs(z) < 3, (name, s)
        scores.append((s["acc_norm"] - s["random_baseline"]) / scale)
        variances.append((s["acc_norm_stderr"] / scale) ** 2)
    mean = sum(scores) / len(scores)
    assert abs(mean) < 2 * math.sqrt(sum(variances)) / len(scores), (mean, scores)


@pytest.mark.filterwarnings("ignore:.*truncated from the left")
def test_kiln_train_logs_task_scores_into_metrics_jsonl(tmp_path) -> None:
    from helpers import TINY_TRAIN

    run = tmp_path / "run"
    rc, _, err = run_cli(
        ["train", *TINY_TRAIN, f"out_dir={run}", "max_steps=4", "eval_interval=2", "eval_task_interval=4",
         'eval_tasks=["copa", "wsc"]', "sample_tokens=0"]
    )  # fmt: skip
    assert rc == 0, err
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in lines if "task/copa/acc" in r]
    assert [r["step"] for r in scored] == [4]  # evaluations at 2 and 4; tasks only at multiples of 4
    r = scored[0]
    assert 0 <= r["task/copa/acc"] <= 1 and 0 <= r["task/wsc/acc_norm"] <= 1
    assert r["task/centred"] == pytest.approx(((r["task/copa/acc"] - 0.5) / 0.5 + (r["task/wsc/acc"] - 0.5) / 0.5) / 2)


def test_an_unknown_training_task_fails_before_training(tmp_path) -> None:
    from helpers import TINY_TRAIN

    rc, _, err = run_cli(["train", *TINY_TRAIN, f"out_dir={tmp_path / 'run'}", 'eval_tasks=["nope"]'])
    assert rc == 2 and "unknown task 'nope'" in err and len(err.strip().splitlines()) == 1


def test_results_json_names_the_checkpoint_and_is_strict_json(tmp_path) -> None:
    """What a leaderboard across checkpoints reads: which checkpoint (path, step, val figures), per-task stderr,
    the aggregate with its stderr, and no NaN (limit=1 makes every stderr undefined: written as null)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=1, n_head=2, n_embd=16))
    ckpt = save_checkpoint(tmp_path / "step_00120", model, ByteTokenizer(), {"step": 120, "val_loss": 2.5})
    out = tmp_path / "out"
    rc, _, err = run_cli(["eval", str(ckpt), "copa", "wsc", "limit=1", f"out_dir={out}", "--no-progress"])
    assert rc == 0, err
    text = (out / "results.json").read_text()
    results = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
    info = results["checkpoint_info"]
    assert info["step"] == 120 and info["val_loss"] == 2.5 and info["val_bpb"] is None and info["name"] == "step_00120"
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert results["schema_version"] == 1 and results["evaluated_at"].endswith("+00:00")
    assert results["tasks"]["copa"]["acc_stderr"] is None and results["centred_stderr"] is None
    assert results["tasks"]["copa"]["kind"] == "mc" and results["tasks"]["wsc"]["kind"] == "schema"
    assert results["settings"]["limit"] == 1


def test_the_aggregate_stderr_combines_the_tasks(checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    rc, _, err = run_cli(["eval", str(checkpoint), "copa", "lambada", "limit=8", f"out_dir={out}", "--no-progress"])
    assert rc == 0, err
    r = json.loads((out / "results.json").read_text())
    copa, lam = r["tasks"]["copa"], r["tasks"]["lambada"]
    assert copa["centred_stderr"] == pytest.approx(copa["acc_stderr"] / 0.5)
    want = math.sqrt((copa["acc_stderr"] / 0.5) ** 2 + lam["acc_stderr"] ** 2) / 2
    assert r["centred_stderr"] == pytest.approx(want)
