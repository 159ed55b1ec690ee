"""GSM8K in kiln eval: extraction and exact match against lm-evaluation-harness's own filter and metric functions on
hand-written edge cases, pass@k against the binomial formula, prompts, stop strings and tokens, seeded sampling,
and one-line errors. (The end-to-end comparison with the harness is test_eval_gsm8k_parity.py.)"""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import run_cli
from kiln.eval.evaluate import evaluate_task
from kiln.eval.extract import FILTERS, exact_match, extract
from kiln.eval.generation_settings import GenerationSettings
from kiln.eval.generative import generate_all
from kiln.eval.gsm8k import plain_prompt, prompt_ids, stop_ids, use_chat_template
from kiln.eval.passk import pass_at_k
from kiln.eval.tasks import TaskFileError, read_task_file, resolve_task
from kiln.generate.sampling import SamplingParams
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import save_checkpoint
from kiln.tokenizer import ByteTokenizer, train_bpe
from kiln.tokenizer.chat import render_chat_ids

# GSM8K prompts in bytes are longer than these tiny models' context less the answer: kept from the end, as the
# harness does, with a warning (tested in test_prompts_too_long_keep_their_end_with_a_warning).
pytestmark = pytest.mark.filterwarnings("ignore:.*they keep their last")

# Responses that hit each corner of the two regexes and the exact-match preprocessing, with GSM8K-style references.
CASES = [
    ("She pays 3 * 6 = 18.\n#### 18", "x\n#### 18"),
    ("#### 1,000.", "so 1000 in all\n#### 1000"),
    ("The answer is $1,234.50.", "#### 1234.50"),
    ("#### -7", "#### -7"),
    ("####18", "#### 18"),  # no space after the marker: strict finds nothing
    ("#### 5 and then #### 6", "#### 6"),  # strict takes the first, flexible the last
    ("no numbers here", "#### 3"),
    ("it is 7", "#### 7"),  # a single digit only matches flexible's second group
    ("costs $12. Then 4.", "#### 4"),
    ("A. 3,5", "#### 35"),
    ("#### 12\n\nQuestion: next", "#### 12"),
    ("answer: 2.0", "#### 2"),  # "2.0" is not "2": exact match, as the harness
    ("... 40... #### 40.", "#### 40"),
    ("#### $18", "#### 18"),  # "$" is not in strict's character class
]


def _reference(response: str, reference: str, filt: str) -> tuple[str, bool]:
    """lm-evaluation-harness's RegexFilter + exact_match with gsm8k.yaml's settings, called directly."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    pattern, group = FILTERS[filt]
    found = RegexFilter(regex_pattern=pattern.pattern, group_select=group).apply([[response]], [{}])[0][0]
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
    em = exact_match_hf_evaluate([found], [reference], regexes_to_ignore=ignore, ignore_case=True)["exact_match"]
    return found, bool(em)


@pytest.mark.parametrize("response,reference", CASES)
@pytest.mark.parametrize("filt", ["strict-match", "flexible-extract"])
def test_extraction_and_exact_match_equal_the_harness_s(response, reference, filt) -> None:
    ours = extract(response, filt)
    assert (ours, exact_match(ours, reference)) == _reference(response, reference, filt)


def test_extraction_by_hand() -> None:
    assert extract("#### 5 and then #### 6", "strict-match") == "5"
    assert extract("#### 5 and then #### 6", "flexible-extract") == "6"
    assert extract("####18", "strict-match") == "[invalid]"
    assert extract("The answer is $1,234.50.", "flexible-extract") == "$1,234.50."
    assert exact_match("$1,234.50.", "#### 1234.50") and not exact_match("2.0", "#### 2")
    assert exact_match("1,000.", "#### 1000")


def test_pass_at_k_equals_the_binomial_formula() -> None:
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25) and pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)


def test_prompts_plain_for_a_base_tokenizer_and_the_chat_template_for_a_chat_one() -> None:
    task = resolve_task("gsm8k", None, 5)
    q = task.items[2].contexts[0]
    assert plain_prompt(task, 2) == f"Question: {q}\nAnswer:"
    two = plain_prompt(task, 2, num_fewshot=2, seed=7)
    assert two.endswith(f"\n\nQuestion: {q}\nAnswer:") and two.count("Question: ") == 3 and two.count("#### ") == 2
    assert q not in two[: -len(q) - 10]  # the item is never its own example
    byte = ByteTokenizer()
    assert prompt_ids(byte, task, 2) == byte.encode(f"Question: {q}\nAnswer:") and stop_ids(byte) == ()
    chat = train_bpe(["Janet's ducks lay 16 eggs per day. " * 20], vocab_size=300,
                     special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])  # fmt: skip
    assert prompt_ids(chat, task, 2) == render_chat_ids(chat, [("user", q)])
    assert stop_ids(chat) == (chat.special_tokens["<|im_end|>"],)
    assert prompt_ids(chat, task, 2, chat=False) == chat.encode(f"Question: {q}\nAnswer:")
    assert stop_ids(chat, chat=False) == (chat.special_tokens["<|endoftext|>"],)

    # Which prompt "auto" picks: kiln vocabularies reserve ChatML's tokens, so a kiln pretraining run's checkpoint
    # (config.json's train has no source checkpoint) is a base model; a fine-tuned or imported one is a chat model.
    assert not use_chat_template("auto", chat, {"train": {"preset": "char-cpu", "step": 5}})
    assert use_chat_template("auto", chat, {"train": {"checkpoint": "runs/base", "preset": "checkpoint"}})
    assert use_chat_template("auto", chat, {}) and not use_chat_template("auto", byte, {})
    assert not use_chat_template("no", chat, {}) and use_chat_template("yes", chat, {"train": {}})
    with pytest.raises(ValueError, match="no chat template"):
        use_chat_template("yes", byte, {})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=256, block_size=128, n_layer=1, n_head=2, n_embd=32)).eval()


def test_generation_stops_at_a_stop_string_and_a_stop_token(model) -> None:
    tok = ByteTokenizer()
    prompts = [tok.encode("Question: what is 2 + 2?\nAnswer:"), tok.encode("Q: 7 * 6?")]
    free = generate_all(model, tok, prompts, SamplingParams(temperature=0, max_new_tokens=40), max_batch=2)
    for prompt, text in zip(prompts, free, strict=True):
        assert len(text) >= 20
        stop = text[10:13]  # a piece of what the model writes anyway, so the stop must fire
        cut = generate_all(model, tok, [prompt], SamplingParams(temperature=0, max_new_tokens=40, stop=(stop,)))
        assert cut == [text[: text.index(stop)]]
    ids = tok.encode(free[0])
    by_token = generate_all(model, tok, prompts[:1], SamplingParams(temperature=0, max_new_tokens=40,
                                                                    stop_token_ids=(ids[5],)))  # fmt: skip
    assert by_token == [tok.decode(ids[: ids.index(ids[5])])]


def test_prompts_too_long_keep_their_end_with_a_warning(model) -> None:
    tok = ByteTokenizer()
    long, params = tok.encode("x" * 300 + "Answer:"), SamplingParams(temperature=0, max_new_tokens=8)
    with pytest.warns(UserWarning, match="1 of 1 prompts .* keep their last 120 tokens"):
        text = generate_all(model, tok, [long], params)
    assert text == generate_all(model, tok, [long[-120:]], params)


def test_sampling_is_seeded_per_answer_whatever_the_batching(model) -> None:
    task = resolve_task("gsm8k", None, 3)
    tok = ByteTokenizer()

    def responses(batch: int, seed: int = 1234) -> list:
        settings = GenerationSettings(max_new_tokens=12, temperature=1.0, num_samples=3, pass_k=(1, 3),
                                      seed=seed, max_batch=batch)  # fmt: skip
        return [d["responses"] for d in evaluate_task(model, tok, task, generation=settings).decisions]

    one = responses(1)
    assert one == responses(8) and one != responses(8, seed=99)
    assert len({r for rs in one for r in rs}) == 9  # nine different samples


def test_greedy_batched_equals_one_at_a_time(model) -> None:
    task = resolve_task("gsm8k", None, 4)
    tok = ByteTokenizer()
    g = GenerationSettings(max_new_tokens=16)
    together = evaluate_task(model, tok, task, generation=g).decisions
    alone = [evaluate_task(model, tok, resolve_task("gsm8k", None, i + 1), generation=g).decisions[i] for i in range(4)]
    assert [d["responses"] for d in together] == [d["responses"] for d in alone]


def test_malformed_gsm8k_lines_name_file_and_line(tmp_path) -> None:
    good = json.dumps({"question": "1 + 1?", "answer": "2\n#### 2"})
    for bad, why in [
        (json.dumps({"question": "1 + 1?", "answer": "it is 2"}), "no final '#### N'"),
        (json.dumps({"question": 3, "answer": "#### 3"}), "must be strings"),
        ('{"question": "x", "answer": ', "not valid JSON"),
    ]:
        path = tmp_path / "g.jsonl"
        path.write_text(good + "\n" + good + "\n" + bad + "\n")
        with pytest.raises(TaskFileError, match=rf"g\.jsonl:3: .*{why}"):
            read_task_file(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), model, ByteTokenizer())


def test_kiln_eval_gsm8k_cli_results_and_errors(checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["limit=4", "max_new_tokens=8", "temperature=0.7", "num_samples=2", "pass_k=[1,2]", f"out_dir={out}"]
    rc, stdout, err = run_cli(["eval", str(checkpoint), "gsm8k", *args, "--per-item", "--no-progress"])
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    g = results["tasks"]["gsm8k"]
    assert g["items"] == 4 and g["num_samples"] == 2 and g["kind"] == "gen" and "pass@2_flexible" in g
    assert "exact match strict" in stdout
    items = [json.loads(line) for line in (out / "items" / "gsm8k.jsonl").read_text().splitlines()]
    assert [len(i["responses"]) for i in items] == [2] * 4 and items[0]["target"] == "18"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"question": "q"}) + "\n")
    for args, message in [
        (["gsm8kk"], "unknown task 'gsm8kk'"),
        ([str(bad)], "bad.jsonl:2:"),
        (["gsm8k", "num_samples=2", "temperature=1", "pass_k=[4]"], "pass_k=4 needs 1 <= k <= num_samples"),
        (["gsm8k", "num_samples=3"], "temperature > 0"),
        (["gsm8k", "chat=maybe"], "chat must be auto, yes or no"),
        (["gsm8k", "chat=yes"], "no chat template"),
    ]:
        rc, _, err = run_cli(["eval", str(checkpoint), *args])
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
