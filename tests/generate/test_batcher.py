"""Continuous batching (kiln.generate.batcher): requests that join and leave between steps produce the
tokens each would produce alone, whatever the model's attention/position scheme; cancellation frees the
row; the queue is bounded; the worker loop serves submissions from other threads."""

from __future__ import annotations

import threading

import pytest
import torch

from helpers import widths_seen
from kiln.generate import SamplingParams, generate
from kiln.generate.batcher import ContinuousBatcher, QueueFull, Request
from kiln.tokenizer import ByteTokenizer

VOCAB = 97


def _prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


def _run_staggered(batcher: ContinuousBatcher, reqs: list[Request], every: int = 3) -> None:
    """Submit two requests, then one more every `every` steps, stepping until everything is done."""
    pending = list(reqs)
    for r in pending[:2]:
        batcher.submit(r)
    pending = pending[2:]
    while batcher.busy or pending:
        batcher.step()
        if pending and batcher.steps % every == 0:
            batcher.submit(pending.pop(0))


@pytest.mark.parametrize(
    "overrides",
    [
        {"pos_encoding": "learned"},
        {"pos_encoding": "rope", "n_kv_head": 2},
        {"pos_encoding": "alibi"},
        {"pos_encoding": "rope", "attention_window": 8},
        {"pos_encoding": "sinusoidal", "norm": "rmsnorm", "activation": "swiglu"},
        {"pos_encoding": "rope", "n_experts": 4},
    ],
)
def test_joining_and_leaving_gives_each_request_its_solo_tokens(make_model, overrides):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=48, **overrides)
    # max_len just over the context forces compactions; max_batch 3 forces waiting and row reuse.
    batcher = ContinuousBatcher(model, max_batch=3, max_len=52)
    lengths, news = [3, 10, 1, 30, 7, 20, 5, 44], [40, 5, 12, 30, 8, 3, 25, 9]
    events: dict[int, list] = {}
    reqs = [
        Request(
            p, SamplingParams(temperature=0, max_new_tokens=m), lambda ev, i=i: events.setdefault(i, []).append(ev), i
        )
        for i, (p, m) in enumerate(zip(_prompts(lengths), news, strict=True))
    ]
    _run_staggered(batcher, reqs)
    for i, r in enumerate(reqs):
        solo = generate(model, r.prompt, SamplingParams(temperature=0, max_new_tokens=news[i]))
        room = 48 - len(r.prompt)  # the batcher stops at the context instead of sliding
        assert [e.token_id for e in events[i]] == solo.tokens[:room], f"request {i}"
        last = events[i][-1]
        assert last.finish_reason == "length" and all(e.finish_reason is None for e in events[i][:-1])
    assert not batcher.active and not batcher.waiting


def test_bucketed_prefills_join_with_their_solo_tokens(make_model, looks_bf16):
    """Under bf16 on the CPU a joining group prefills at one of a few widths (gpt.prefill_width); each row is
    copied into the shared cache from its own slots, so the tokens stay the unpadded solo ones."""
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=48, pos_encoding="rope", n_kv_head=2)
    batcher = ContinuousBatcher(model, max_batch=3, max_len=52)
    lengths, news = [3, 10, 1, 30, 7, 20, 5, 44], [40, 5, 12, 30, 8, 3, 25, 9]
    events: dict[int, list] = {}
    reqs = [
        Request(p, SamplingParams(temperature=0, max_new_tokens=m), lambda ev, i=i: events.setdefault(i, []).append(ev))
        for i, (p, m) in enumerate(zip(_prompts(lengths), news, strict=True))
    ]
    seen, _ = widths_seen(model, _run_staggered, batcher, reqs)
    prefills = [w for w in seen if w > 1]
    assert prefills and all(w % 16 == 0 for w in prefills)  # 16, 32 or 48 wide, whatever the prompts' lengths
    model.bucket_shapes = False
    for i, r in enumerate(reqs):
        solo = generate(model, r.prompt, SamplingParams(temperature=0, max_new_tokens=news[i]))
        assert [e.token_id for e in events[i]] == solo.tokens[: 48 - len(r.prompt)], f"request {i}"


def test_seeded_sampling_is_independent_of_batch_company(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=64)
    params = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.3, max_new_tokens=20)

    def run(company: int) -> list[int]:
        batcher = ContinuousBatcher(model, max_batch=8)
        got: list[int] = []
        target = Request(
            _prompts([6])[0], params, lambda ev: got.append(ev.token_id), 0, torch.Generator().manual_seed(5)
        )
        batcher.submit(target)
        for j, p in enumerate(_prompts([4] * company, seed=9)):
            g = torch.Generator().manual_seed(100 + j)
            batcher.submit(Request(p, params, lambda ev: None, j + 1, g))
        while batcher.busy:
            batcher.step()
        return got

    alone = run(0)
    assert len(alone) == 20
    assert run(5) == alone


def test_stop_ids_stop_strings_and_text(make_model):
    model = make_model(dtype=torch.float32, vocab_size=256, block_size=64)
    tok = ByteTokenizer()
    prompt = tok.encode("abc")
    free = generate(model, prompt, SamplingParams(temperature=0, max_new_tokens=30), tokenizer=tok)
    batcher = ContinuousBatcher(model, tok)
    # a stop token id: the first generated id stops at once, with no text
    got: list = []
    batcher.submit(Request(prompt, SamplingParams(temperature=0, stop_token_ids=(free.tokens[2],)), got.append))
    while batcher.busy:
        batcher.step()
    stop_at = free.tokens.index(free.tokens[2])
    assert [e.token_id for e in got] == free.tokens[: stop_at + 1]
    assert got[-1].finish_reason == "stop"
    # text events concatenate to the decoded output
    got2: list = []
    batcher.submit(Request(prompt, SamplingParams(temperature=0, max_new_tokens=30), got2.append))
    while batcher.busy:
        batcher.step()
    assert "".join(e.text for e in got2) == free.text


def test_cancel_frees_the_row_and_says_cancelled(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=64)
    batcher = ContinuousBatcher(model, max_batch=2)
    got: list = []
    long = Request(_prompts([5])[0], SamplingParams(temperature=0, max_new_tokens=50), got.append)
    other: list = []
    batcher.submit(long)
    batcher.submit(Request(_prompts([3])[0], SamplingParams(temperature=0, max_new_tokens=50), other.append))
    for _ in range(4):
        batcher.step()
    long.cancel()
    batcher.step()
    assert got[-1].finish_reason == "cancelled" and len(batcher.active) == 1
    n = len(got)
    while batcher.busy:
        batcher.step()
    assert len(got) == n  # nothing after the cancellation
    assert len(other) == 50


def test_queue_bound_and_prompt_checks(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=16)
    batcher = ContinuousBatcher(model, max_batch=1, max_queue=2)
    p = SamplingParams(temperature=0, max_new_tokens=4)
    batcher.submit(Request([1, 2], p, lambda ev: None))
    batcher.submit(Request([1, 2], p, lambda ev: None))
    with pytest.raises(QueueFull):
        batcher.submit(Request([1, 2], p, lambda ev: None))
    with pytest.raises(ValueError, match="context is 16"):
        ContinuousBatcher(model).submit(Request(list(range(16)), p, lambda ev: None))
    with pytest.raises(ValueError, match="at least one token"):
        ContinuousBatcher(model).submit(Request([], p, lambda ev: None))


def test_a_request_stops_at_the_context(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=16)
    batcher = ContinuousBatcher(model)
    got: list = []
    batcher.submit(Request(list(range(10)), SamplingParams(temperature=0, max_new_tokens=100), got.append))
    while batcher.busy:
        batcher.step()
    assert len(got) == 6 and got[-1].finish_reason == "length"


def test_worker_thread_serves_other_threads_and_calls(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=64)
    batcher = ContinuousBatcher(model, max_batch=4)
    stop = threading.Event()
    worker = threading.Thread(target=batcher.run, args=(stop,), daemon=True)
    worker.start()
    try:
        done = [threading.Event() for _ in range(6)]
        outs: list[list[int]] = [[] for _ in range(6)]

        def on_event(i):
            def f(ev):
                outs[i].append(ev.token_id)
                if ev.finish_reason:
                    done[i].set()

            return f

        prompts = _prompts([4, 9, 2, 7, 3, 5], seed=3)
        for i, p in enumerate(prompts):
            batcher.submit(Request(p, SamplingParams(temperature=0, max_new_tokens=10), on_event(i), i))
        vocab = batcher.call(lambda m: m.config.vocab_size).result(timeout=30)
        assert vocab == VOCAB
        for d in done:
            assert d.wait(timeout=60)
    finally:
        stop.set()
        batcher.wake()
        worker.join(timeout=10)
    assert not worker.is_alive()
    # (the reference runs after the worker stopped: one model is never used by two threads at once)
    for i, p in enumerate(prompts):
        assert outs[i] == generate(model, p, SamplingParams(temperature=0, max_new_tokens=10)).tokens


def test_a_raising_consumer_does_not_hurt_the_others(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=64)
    batcher = ContinuousBatcher(model)

    def broken(ev):
        raise RuntimeError("client went away")

    fine: list = []
    batcher.submit(Request([1, 2, 3], SamplingParams(temperature=0, max_new_tokens=8), broken))
    batcher.submit(Request([4, 5], SamplingParams(temperature=0, max_new_tokens=8), fine.append))
    while batcher.busy:
        batcher.step()
    assert len(fine) == 8 and fine[-1].finish_reason == "length"


def test_a_request_whose_sampling_fails_ends_alone_with_error(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=64)
    batcher = ContinuousBatcher(model)
    bad: list = []
    good: list = []
    # temperature 1e-300 overflows the logits to inf -> NaN probabilities: torch.multinomial raises
    batcher.submit(Request([1, 2, 3], SamplingParams(temperature=1e-300, max_new_tokens=5), bad.append))
    batcher.submit(Request([4, 5], SamplingParams(temperature=0, max_new_tokens=5), good.append))
    while batcher.busy:
        batcher.step()
    assert [e.finish_reason for e in bad] == ["error"]
    assert len(good) == 5 and good[-1].finish_reason == "length"
