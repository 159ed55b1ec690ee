"""Tests for the `kiln` command line: run in-process through kiln.cli.main (and once as `python -m kiln`)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import TINY_TRAIN, run_cli
from kiln import __version__
from kiln.cli import main
from kiln.model.checkpoint import resolve_checkpoint
from kiln.tokenizer import load_tokenizer

TINY = TINY_TRAIN
CORPUS = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles\n"
    "And by opposing end them. To die, to sleep;\n"
) * 12


_run = run_cli


def _config(directory: Path) -> dict:
    return json.loads((resolve_checkpoint(directory) / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> tuple[Path, int, str]:
    out_dir = tmp_path_factory.mktemp("ckpt") / "run"
    rc, out, _ = _run(["train", *TINY, "max_steps=30", "lr=0.01", f"data={corpus}", f"out_dir={out_dir}"])
    return out_dir, rc, out


# ------------------------------------------------------------------------------------------------ version / model


def test_version_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kiln", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"kiln {__version__}"


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage: kiln" in capsys.readouterr().err


def test_model_gpt2_param_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "gpt2"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("gpt2 "))
    assert "124,439,808" in row
    assert "85,056,000" in row  # non-embedding
    assert "GPT-2 small" in row


def test_model_several_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "tiny", "llama3-8b", "--dtype", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "memory in fp32" in out
    rows = [line.split()[0] for line in out.splitlines()[2:]]
    assert rows == ["tiny", "llama3-8b"]


def test_model_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "gpt5"]) == 2
    err = capsys.readouterr().err
    assert "unknown model preset 'gpt5'" in err


# ------------------------------------------------------------------------------------------------ train


def test_train_writes_checkpoint_and_prints_val_loss(trained) -> None:
    out_dir, rc, out = trained
    assert rc == 0
    ckpt = resolve_checkpoint(out_dir)
    assert ckpt.parent == out_dir / "checkpoints"
    assert (ckpt / "model.safetensors").is_file()
    assert (ckpt / "tokenizer" / "kiln-tokenizer.json").is_file()
    assert (out_dir / "metrics.jsonl").is_file()
    config = _config(out_dir)
    m = re.search(r"val loss (\d+\.\d{4}) \((\d+\.\d{3}) bits/byte\) after (\d+) steps", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(config["val_loss"], abs=1e-4)
    assert float(m.group(2)) == pytest.approx(config["val_bpb"], abs=1e-3)
    assert int(m.group(3)) == config["step"] == 30
    assert f"checkpoints: {out_dir}" in out
    assert config["model"]["n_layer"] == 1 and config["model"]["n_embd"] == 32
    assert config["model"]["vocab_size"] == len(set(CORPUS))
    assert config["train"]["preset"] == "tiny"


def test_train_unknown_override_suggests_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "model.n_layr=3", f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kiln train: error:")
    assert "did you mean model.n_layer=3?" in err  # the setting as it should have been typed
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_bad_value_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", *TINY, "batch_size=0", f"out_dir={tmp_path}"]) == 2
    assert "batch_size" in capsys.readouterr().err


def test_train_missing_data_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", *TINY, f"data={tmp_path / 'nope.txt'}", f"out_dir={tmp_path / 'run'}"]) == 2
    assert "training data not found" in capsys.readouterr().err


def test_train_two_config_files_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "a.toml", "b.toml"]) == 2
    assert "at most one config file" in capsys.readouterr().err


def test_train_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_train_toml_file_plus_override(capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        f"""
preset = "tiny"
data = "{corpus}"
max_steps = 7
batch_size = 3
eval_batches = 1
sample_tokens = 0
device = "cpu"

[model]
n_layer = 2
n_embd = 32
n_head = 2
block_size = 16
""",
        encoding="utf-8",
    )
    out_dir = tmp_path / "run"
    assert main(["train", str(toml), "max_steps=3", "model.n_layer=1", f"out_dir={out_dir}"]) == 0
    assert "after 3 steps" in capsys.readouterr().out
    config = _config(out_dir)
    assert config["step"] == 3
    assert config["train"]["max_steps"] == 3  # the override wins over the file
    assert config["model"]["n_layer"] == 1  # ... for model.* keys too
    assert config["train"]["batch_size"] == 3  # file values that are not overridden stay
    assert config["model"]["block_size"] == 16
    assert config["model"]["pos_encoding"] == "learned"  # the file's preset (tiny) is the base


@pytest.mark.parametrize(
    ("name", "pos", "norm", "tied"), [("tiny", "learned", "layernorm", True), ("tiny-llama", "rope", "rmsnorm", False)]
)
def test_train_preset_switches_architecture(
    tmp_path: Path, corpus: Path, name: str, pos: str, norm: str, tied: bool
) -> None:
    out_dir = tmp_path / "run"
    argv = ["train", *TINY, f"preset={name}", "max_steps=2", f"data={corpus}", f"out_dir={out_dir}"]
    rc, _, err = _run(argv)
    assert rc == 0, err
    model = _config(out_dir)["model"]
    assert model["pos_encoding"] == pos
    assert model["norm"] == norm
    assert model["tie_embeddings"] is tied
    assert model["n_embd"] == 32  # command-line model.* keys still apply on top of the preset


def test_train_model_overrides_without_preset_keep_char_cpu(tmp_path: Path, corpus: Path) -> None:
    out_dir = tmp_path / "run"
    tiny_shape = [a for a in TINY if a != "preset=tiny"]
    rc, _, err = _run(["train", *tiny_shape, "max_steps=1", f"data={corpus}", f"out_dir={out_dir}"])
    assert rc == 0, err
    model = _config(out_dir)["model"]
    assert model["pos_encoding"] == "rope"  # char-cpu's architecture, with the overridden shape
    assert model["norm"] == "rmsnorm"
    assert model["activation"] == "swiglu"


def test_train_preset_with_partial_model_override(tmp_path: Path, corpus: Path) -> None:
    out_dir = tmp_path / "run"
    argv = ["train", "preset=tiny", "model.n_embd=64", "model.n_layer=1", "model.block_size=16"]
    argv += ["batch_size=2", "eval_batches=1", "sample_tokens=0", "max_steps=1", f"data={corpus}", f"out_dir={out_dir}"]
    rc, _, err = _run(argv)
    assert rc == 0, err
    assert _config(out_dir)["model"]["n_head"] == 4


# ------------------------------------------------------------------------------------------------ generate


def _generate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["generate", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_generate_from_checkpoint_is_reproducible(trained, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir, rc, _ = trained
    assert rc == 0
    args = ["--checkpoint", str(out_dir), "--prompt", "To be", "--max-new-tokens", "20", "--seed", "3"]
    rc1, out1, _ = _generate(capsys, *args)
    rc2, out2, _ = _generate(capsys, *args)
    assert rc1 == rc2 == 0
    assert out1 == out2
    assert out1.startswith("To be")
    assert out1.endswith("\n")
    generated = out1[len("To be") : -1]
    assert len(generated) == 20  # char tokenizer: one character per new token
    assert set(generated) <= set(CORPUS)
    rc3, out3, _ = _generate(capsys, *args[:-1], "4")
    assert rc3 == 0 and out3.startswith("To be") and out3 != out1


def test_generate_num_samples(trained, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir, _, _ = trained
    args = ["--checkpoint", str(out_dir), "--prompt", "To", "--max-new-tokens", "8", "--seed", "3"]
    rc, out, _ = _generate(capsys, *args, "--num-samples", "2")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "--- sample 1 ---"
    assert "--- sample 2 ---" in lines
    # sample 1 uses seed 3, like a single sample with --seed 3
    _, single, _ = _generate(capsys, *args)
    assert out.split("--- sample 2 ---\n")[0] == "--- sample 1 ---\n" + single


def test_generate_logprobs_prints_alternatives(trained, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir, _, _ = trained
    args = ["--checkpoint", str(out_dir), "--prompt", "To be", "--max-new-tokens", "4", "--seed", "3"]
    rc, out, _ = _generate(capsys, *args, "--logprobs", "2")
    assert rc == 0
    _, plain, _ = _generate(capsys, *args)
    assert out.startswith(plain)  # the same text first, then one line per token
    table = out[len(plain) :].splitlines()
    assert len(table) == 4
    for line in table:
        chosen, alts = line.split(" | ")
        chosen_lp = float(chosen.split()[-1])
        alt_lps = [float(x) for x in re.findall(r"(?<=\s)-?\d+\.\d{2}(?=\s|$)", " " + alts)]
        assert len(alt_lps) == 2, line
        assert all(lp <= 0 for lp in [chosen_lp, *alt_lps])
        assert alt_lps[0] >= alt_lps[1]  # most likely first
        assert chosen_lp <= alt_lps[0] + 0.01  # nothing beats the top alternative


def test_generate_negative_temperature_exits_2(trained, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir, _, _ = trained
    rc, out, err = _generate(capsys, "--checkpoint", str(out_dir), "--temperature", "-1")
    assert rc == 2
    assert "temperature" in err
    assert "Traceback" not in err
    assert out == ""


def test_generate_unknown_prompt_character_exits_2(trained, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir, _, _ = trained
    rc, _, err = _generate(capsys, "--checkpoint", str(out_dir), "--prompt", "To be ☃", "--max-new-tokens", "2")
    assert rc == 2
    assert "'☃'" in err


def test_generate_missing_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _generate(capsys, "--checkpoint", str(tmp_path / "nope"))
    assert rc == 2
    assert "not a kiln checkpoint" in err


def test_generate_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "hi"]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_generate_random_preset_without_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--preset", "tiny", "--max-new-tokens", "5", "--seed", "1", "--prompt", "hi"]
    rc, out, err = _generate(capsys, *args)
    assert rc == 0
    assert "randomly initialised tiny" in err
    assert out.startswith("hi") and out.endswith("\n")
    assert 0 < len(out[2:-1].encode("utf-8")) <= 5 * 3  # 5 byte tokens, split UTF-8 shown as U+FFFD
    assert _generate(capsys, *args)[1] == out  # seeded: the same noise twice


def test_generate_random_preset_default_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _generate(capsys, "--preset", "tiny", "--max-new-tokens", "5", "--temperature", "0")
    assert rc == 0
    assert out.endswith("\n") and len(out) >= 2


def test_bundled_recipe_loads_and_validates() -> None:
    """recipes/shakespeare_char.toml (the 140 s CPU recipe the benchmark runs) is a valid config: the preset
    comes from the file and its [model] table narrows it."""
    from kiln.model import preset
    from kiln.train.config import load_train_config

    path = Path(__file__).resolve().parents[1] / "recipes" / "shakespeare_char.toml"
    cfg = load_train_config(str(path), []).validate()
    assert cfg.optimizer == "muon" and cfg.max_minutes is not None
    assert cfg.model.n_embd == 128 and cfg.model.n_layer == preset("char-cpu").n_layer


def test_filesystem_errors_are_one_line_naming_the_path() -> None:
    from kiln.cli import _message

    assert _message(PermissionError(13, "Permission denied", "/ro/out")) == "/ro/out: permission denied"
    assert _message(NotADirectoryError(20, "Not a directory", "/f/x")) == "/f/x: not a directory"
    assert _message(ValueError("batch_size must be >= 1")) == "batch_size must be >= 1"


# ------------------------------------------------------------------------------------ common mistakes, one line


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run `kiln argv`, expecting exit 2 and a single line on stderr without a traceback; return that line."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["generate", "--preset", "tiny", "--max_tokens", "20"], "did you mean max_new_tokens=20?"),
        (["generate", "--preset", "tiny", "--max-tokens=20"], "did you mean max_new_tokens=20?"),
        (["generate", "--preset", "tiny", "max_token=20"], "did you mean max_new_tokens=20?"),
        (["train", "--steps=5"], "did you mean max_steps=5?"),  # not 'eps', however close the spelling
        (["train", "--max-step", "5"], "did you mean max_steps=5?"),
        (["train", "max_iters=5"], "did you mean max_steps=5?"),  # nanoGPT's name
        (["train", "learning_rate=1e-3"], "did you mean lr=1e-3?"),
        (["train", "steps", "5"], "settings look like key=value; did you mean max_steps=5?"),
        (["generate", "-max_new_tokens", "20"], "options take two dashes (or none: key=value); did you mean"),
        (["train", "model.n_layers=4"], "did you mean model.n_layer=4?"),
    ],
)
def test_mistyped_settings_get_the_setting_as_it_should_be_typed(capsys, argv: list[str], hint: str) -> None:
    assert hint in _one_line_error(capsys, argv)


def test_mistyped_names_get_did_you_mean(capsys, trained, tmp_path: Path) -> None:
    out_dir = trained[0]
    err = _one_line_error(capsys, ["generate", "--checkpoint", str(out_dir) + "x"])  # a typo in the run's name
    assert "it does not exist" in err and f"did you mean {str(out_dir)!r}?" in err
    err = _one_line_error(capsys, ["generate", "--checkpoint", str(out_dir.parent)])  # the directory above a run
    assert f"did you mean one of {out_dir}" in err
    assert "did you mean 'tiny-llama'?" in _one_line_error(capsys, ["model", "tiny-lama"])
    assert "did you mean 'tiny-moe'?" in _one_line_error(capsys, ["train", "preset=tiny-mo"])
    assert "did you mean 'arc_easy'?" in _one_line_error(capsys, ["eval", str(out_dir), "arc_eazy"])
    err = _one_line_error(capsys, ["tokenizer", "encode", "--tokenizer", "cl100k", "hi"])
    assert "did you mean 'cl100k_base'?" in err
    tok = resolve_checkpoint(out_dir) / "tokenizer"
    err = _one_line_error(capsys, ["tokenizer", "encode", "--tokenizer", str(tok) + "s", "hi"])
    assert f"did you mean {str(tok)!r}?" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_naming_the_setting(capsys, corpus: Path, tmp_path: Path) -> None:
    err = _one_line_error(capsys, ["train", *TINY, f"data={corpus}", f"out_dir={tmp_path / 'r'}", "device=cuda"])
    assert "device=cuda: CUDA is not available here" in err and "device=cpu" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_device_mps_without_mps_is_one_line_naming_the_setting(capsys, trained) -> None:
    err = _one_line_error(capsys, ["eval", str(trained[0]), "arc_easy", "device=mps"])
    assert "device=mps: Apple's MPS is not available here" in err


def test_out_of_range_token_ids_name_the_id_and_the_vocabulary_size(capsys, trained) -> None:
    err = _one_line_error(capsys, ["tokenizer", "decode", "--tokenizer", "byte", "72", "256"])
    assert "token id 256 is out of range: the tokenizer 'byte' has 256 ids (0 to 255)" in err
    err = _one_line_error(capsys, ["tokenizer", "decode", "--tokenizer", "byte", "--", "-1"])
    assert "token id -1 is out of range" in err
    vocab = _config(trained[0])["model"]["vocab_size"]
    err = _one_line_error(capsys, ["generate", "--checkpoint", str(trained[0]), f"prompt_ids=[1, {vocab}]"])
    assert f"prompt_ids: token id {vocab} is out of range: the model's vocabulary has {vocab} ids" in err
    ids = load_tokenizer(resolve_checkpoint(trained[0]) / "tokenizer").encode("To be")
    rc, out, _ = _generate(capsys, "--checkpoint", str(trained[0]), f"prompt_ids={ids}", "--max-new-tokens", "3")
    assert rc == 0 and out.startswith("To be") and len(out) == len("To be") + 3 + 1  # decoded, continued


# ------------------------------------------------------------------------------- progress in a file or a pipe


def test_train_progress_in_a_pipe_is_lines_and_the_final_sample_shows_progress(corpus: Path, tmp_path: Path) -> None:
    """stderr captured (not a terminal): tqdm's carriage-return bar becomes whole lines, the last one at 100%; the
    end-of-training sample announces itself before the pause it takes."""
    argv = ["train", *TINY, "max_steps=5", "sample_tokens=12", f"data={corpus}", f"out_dir={tmp_path / 'run'}"]
    rc, out, err = _run(argv)
    assert rc == 0, err
    assert "\r" not in err
    bars = [line for line in err.splitlines() if line.startswith("train: ")]
    assert bars and bars[-1].startswith("train: 5/5 step") and "loss=" in bars[-1]
    assert "sampling 12 tokens: 0/12 tok" in err
    assert "\nsample:\n" in out


def test_progress_bar_writes_lines_at_most_every_interval(monkeypatch) -> None:
    from kiln.utils import progress

    stream = io.StringIO()
    with progress.progress_bar(total=1000, desc="clean", unit="shard", file=stream) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 2  # the start, then (within 10 s) only the last
    assert lines[0].startswith("clean: 0/1000 shard") and lines[1].startswith("clean: 1000/1000 shard")
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)  # a long run: a line at every refresh, each whole
    stream = io.StringIO()
    with progress.progress_bar(total=3, desc="crawl", unit="page", file=stream, mininterval=0) as bar:
        for _ in range(3):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) >= 4 and all(line.startswith("crawl: ") for line in lines)


def test_eval_progress_in_a_pipe_is_whole_lines(capsys) -> None:
    """kiln eval's own counter (not tqdm) follows the same rule: no carriage returns where stderr is no terminal."""
    from kiln.eval.scoring import Progress

    progress = Progress("arc_easy", total=4, items_per_unit=0.5, enabled=True)
    for _ in range(4):
        progress.advance(1)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines() == [err.splitlines()[0]]  # one line: the end (within 10 s)
    assert err.startswith("arc_easy: 2/2 items")
