"""`kiln quickstart` end to end with a tiny budget: every stage runs for real on the bundled data (a real
HTTP crawl of the bundled site, the Common Crawl samples, cleaning, BPE, shards, training, samples), each
stage's output is where the printed command says, the model beats the unigram baseline of its data, and
a rerun resumes instead of redoing."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import run_cli
from kiln.cli import find_stage
from kiln.command import parse
from kiln.config import load_config, to_dict
from kiln.model.checkpoint import load_checkpoint
from kiln.quickstart import unigram_loss
from kiln.stage import config_file_name
from kiln.tokenizer import load_tokenizer

ARGS = [
    "--no-serve",
    "--minutes",
    "0.4",
    "--max-pages",
    "120",
    "--vocab-size",
    "1024",
    "--train",
    "model.n_layer=2",
    "--train",
    "model.block_size=128",
    "--sft-minutes",
    "0.15",
    "--rl-minutes",
    "0.1",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    ws = tmp_path_factory.mktemp("quickstart") / "ws"
    rc, out, err = run_cli(["quickstart", "--workspace", str(ws), *ARGS])
    assert rc == 0, out + err
    return ws, out


def test_every_stage_prints_its_command_and_leaves_its_output(workspace):
    ws, out = workspace
    for command in ("kiln crawl", "kiln ingest", "kiln clean", "kiln tokenizer train", "kiln tokenize", "kiln train"):
        assert f"$ {command} " in out
    assert "python -m http.server --bind 127.0.0.1" in out
    crawl = json.loads((ws / "crawl" / "summary.json").read_text())
    assert crawl["pages"] == 120 and list((ws / "crawl").glob("*.warc.gz"))
    ingest = list((ws / "ingest").glob("*.warc.gz"))
    assert ingest
    stats = json.loads((ws / "clean" / "stats.json").read_text())
    assert stats["steps"][0]["in"] > 120  # the crawled pages plus the Common Crawl responses
    docs = [t for f in (ws / "clean").glob("*.parquet") for t in pq.read_table(f).column("text").to_pylist()]
    assert len(docs) == stats["documents_out"] > 10
    urls = {u for f in (ws / "clean").glob("*.parquet") for u in pq.read_table(f).column("url").to_pylist()}
    assert any(u.startswith("http://127.0.0.1:") for u in urls) and any(not u.startswith("http://127.") for u in urls)
    assert load_tokenizer(ws / "tokenizer").vocab_size == 1024
    assert list((ws / "tokens").glob("train_*.bin")) and list((ws / "tokens").glob("val_*.bin"))
    model, tokenizer, _ = load_checkpoint(ws / "models" / "quickstart")
    assert model.config.n_layer == 2 and tokenizer is not None and tokenizer.vocab_size == 1024
    samples = json.loads((ws / "samples.json").read_text())
    assert len(samples) == 2 and samples[0].startswith("Once upon a time") and len(samples[0]) > 40


def test_each_printed_command_rebuilds_the_config_the_stage_ran_with(workspace):
    """The quickstart prints, before each stage, a `kiln` command; parsed by the CLI, it gives exactly the config
    the stage ran with (which each stage wrote beside its output as kiln-<stage>.toml)."""
    ws, out = workspace
    commands = [shlex.split(line[len("$ kiln ") :]) for line in out.splitlines() if line.startswith("$ kiln ")]
    seen = set()
    for argv in commands:
        spec, rest = find_stage(argv)
        config = parse(spec, rest)
        if spec.name == "generate":
            assert config.checkpoint == ws / "models" / "quickstart" and config.seed == 1 and config.top_k == 50
            continue
        out_dir = Path(config.out_dir)
        ran = load_config(type(config), out_dir / config_file_name(spec.name))
        assert to_dict(config) == to_dict(ran), spec.name
        seen.add(spec.name)
    assert seen == {"crawl", "ingest", "clean", "tokenizer train", "tokenize", "train", "sft", "rl"}


def test_post_training_makes_a_chat_model_and_measures_both_models(workspace):
    """The SFT stage fine-tunes the pretrained model on the TinyStories instruction task; the follow check
    generates for the held-out instructions with both models and records the rates the summary prints."""
    ws, out = workspace
    _, tok, meta = load_checkpoint(ws / "models" / "quickstart-chat")
    assert "<|im_start|>" in tok.special_tokens and meta["train"]["checkpoint"] == str(ws / "models" / "quickstart")
    records = [json.loads(line) for line in (ws / "sft" / "train.jsonl").read_text().splitlines()]
    assert len(records) > 900 and all(len(r["words"]) == 3 for r in records)
    follow = json.loads((ws / "follow.json").read_text())
    assert set(follow) == {"base", "sft", "rl", "base_words", "sft_words", "rl_words"}
    assert (ws / "models" / "quickstart-rl" / "kiln-rl.toml").is_file()
    from kiln.quickstart import Quickstart, QuickstartConfig

    url = Quickstart(QuickstartConfig(workspace=ws, port=8123)).playground_url()
    assert url == "http://127.0.0.1:8123/?model=quickstart-rl&mode=chat"  # the page opens on the tuned model
    assert all(0 <= v <= 1 for v in follow.values())
    assert (
        "instructions followed" in out and "base  follows" in out and "sft   follows" in out and "rl    follows" in out
    )


def test_the_model_beats_the_unigram_baseline(workspace):
    ws, out = workspace
    summary = json.loads((ws / "summary.json").read_text())
    assert summary["unigram_val_loss"] == pytest.approx(unigram_loss(ws / "tokens"))
    assert summary["val_loss"] < summary["unigram_val_loss"] - 0.3, summary
    assert summary["pages_crawled"] == 120 and summary["parameters"] > 0
    assert "beats it" in out and "== Summary" in out


def test_the_quickstart_model_offers_the_playground_a_story_opening(workspace):
    """Its checkpoint's default_prompt (the playground's pre-filled prompt) is the quickstart's first prompt."""
    ws, _ = workspace
    _, _, meta = load_checkpoint(ws / "models" / "quickstart")
    assert meta["default_prompt"] == "Once upon a time"


def test_the_quickstart_model_exports_and_transformers_generates_the_same_text(workspace, tmp_path):
    """Train with kiln -> `kiln export hf` -> transformers' own `generate`: the same greedy text as kiln's."""
    transformers = pytest.importorskip("transformers")
    import torch

    from kiln.generate import SamplingParams, generate

    ws, _ = workspace
    rc, _, err = run_cli(["export", "hf", str(ws / "models" / "quickstart"), "--out", str(tmp_path / "hf")])
    assert rc == 0, err
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model, tokenizer, _ = load_checkpoint(ws / "models" / "quickstart")
    prompt = "The history of the"
    ids = tokenizer.encode(prompt)
    assert hf_tok.encode(prompt, add_special_tokens=False) == ids
    kiln_ids = generate(model, ids, SamplingParams(temperature=0.0, max_new_tokens=32)).tokens
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=32, min_new_tokens=32)
    assert hf_tok.decode(out[0, len(ids) :]) == tokenizer.decode(kiln_ids)


def test_a_rerun_skips_finished_stages(workspace):
    ws, _ = workspace
    before = json.loads((ws / "summary.json").read_text())
    t0 = time.perf_counter()
    rc, out, err = run_cli(["quickstart", "--workspace", str(ws), *ARGS])
    assert rc == 0, out + err
    assert out.count("done in an earlier run") == 10 and "$ kiln" not in out  # 7 stages, sft, rl, follow
    assert time.perf_counter() - t0 < 20
    after = json.loads((ws / "summary.json").read_text())
    assert after["val_loss"] == before["val_loss"] and after["samples"] == before["samples"]


def test_an_unfinished_training_stage_resumes_from_its_checkpoint(workspace):
    ws, _ = workspace
    for stage in ("train", "sample"):
        (ws / ".quickstart" / f"{stage}.done").unlink()
    rc, out, err = run_cli(["quickstart", "--workspace", str(ws), *ARGS])
    assert rc == 0, out + err
    assert f"$ kiln train --resume {ws / 'models' / 'quickstart'}" in out
    assert out.count("done in an earlier run") == 8  # all but train and sample


def test_bad_budget_is_a_clear_error(tmp_path):
    rc, _, err = run_cli(["quickstart", "--workspace", str(tmp_path / "w"), "--minutes", "0", "--no-serve"])
    assert rc == 2 and "--minutes" in err
