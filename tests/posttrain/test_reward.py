"""`kiln reward`: the Bradley-Terry loss starts at log 2 (a zero head) and the model learns a preference that
carries to held-out prompts; its checkpoint loads as a reward model and scores replies; a cut run resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch
from test_dpo import FAST, metrics, pairs_file

from helpers import cut_and_resume, run_cli
from kiln.model.checkpoint import CheckpointError, load_checkpoint
from kiln.posttrain.reward import reward_positions, score_replies
from kiln.posttrain.reward_model import load_reward_model


def test_reward_positions_read_the_closing_token():
    y = torch.tensor([[-1, 5, 6, -1, -1], [-1, -1, 7, 8, 9]])
    assert reward_positions(y).tolist() == [3, 4]


def test_a_reward_model_learns_the_preference_and_scores_replies(base_model, tmp_path):
    data = pairs_file(tmp_path / "pairs.jsonl", 200, seed=2)
    out = tmp_path / "rm"
    argv = [str(base_model), str(data), *FAST, "batch_size=8", "max_steps=30", "eval_interval=15", "lr=1e-3",
            "val_fraction=0.2", f"out_dir={out}"]  # fmt: skip
    rc, text, err = run_cli(["reward", *argv])
    assert rc == 0, err
    rows = metrics(out)
    assert rows[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-6)  # the head starts at zero
    evals = [m for m in rows if "val_pair_acc" in m]
    assert evals[-1]["val_pair_acc"] >= 0.75 and "pairwise accuracy" in text

    model = load_reward_model(out)
    _, tok, _ = load_checkpoint(base_model)
    prompt = [("user", "Say lantern meadow harbor.")]
    polite, rude = score_replies(
        model, tok, prompt, ["lantern meadow harbor, thank you.", "lantern meadow harbor, go away."]
    )
    assert polite > rude
    with pytest.raises(CheckpointError, match="not a reward model"):
        load_reward_model(base_model)


def test_a_cut_reward_run_resumes_to_the_same_log(base_model, tmp_path):
    data = pairs_file(tmp_path / "pairs.jsonl", 40)
    common = [str(base_model), str(data), *FAST, "max_steps=6", "eval_interval=3", "checkpoint_interval=3",
              "keep_last=5", "lr=1e-3"]  # fmt: skip
    rc, _, err = run_cli(["reward", *common, f"out_dir={tmp_path / 'ref'}"])
    assert rc == 0, err
    run = tmp_path / "cut"
    cut_and_resume("reward", common, run, 6)
    got, want = metrics(run), metrics(tmp_path / "ref")
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for a, b in zip(got, want, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert (run / "kiln-reward.toml").exists()


def test_the_prompt_shared_by_both_replies_gives_the_run_of_separate_rows(base_model, tmp_path):
    data = pairs_file(tmp_path / "pairs.jsonl", 40)
    runs = []
    for share in ("true", "false"):
        out = tmp_path / share
        rc, _, err = run_cli(["reward", str(base_model), str(data), *FAST, "max_steps=4", "eval_interval=4",
                              "lr=1e-3", f"share_prompt={share}", f"out_dir={out}"])  # fmt: skip
        assert rc == 0, err
        runs.append(metrics(out))
    for a, b in zip(*runs, strict=True):
        assert a.keys() == b.keys()
        for key in {"train_loss", "rewards/margins", "val_loss"} & a.keys():
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
    # The same pairs, the prompt run once: fewer tokens counted (tokens/s and MFU count what the forward ran).
    assert 0 < runs[0][-1]["tokens"] < runs[1][-1]["tokens"]
