"""The request checks of kiln.serve.validate, called directly: plain functions of a loaded model and a
request body, no server. (The same checks through HTTP are in test_serve_errors.py.)"""

from __future__ import annotations

import pytest

from kiln.serve.errors import APIError
from kiln.serve.models import ModelRegistry
from kiln.serve.protocol import ChatRequest, CompletionRequest
from kiln.serve.validate import (
    MAX_CHOICES,
    chat_stops,
    chat_top_logprobs,
    check_choices,
    check_completion_options,
    check_prompt,
    completion_prompts,
    require_chat_template,
    sampling_params,
)


@pytest.fixture(scope="module")
def models(serve_models):
    registry = ModelRegistry(serve_models, max_batch=2)
    yield registry
    registry.close()


def completion(**fields) -> CompletionRequest:
    return CompletionRequest(model="char", prompt=fields.pop("prompt", "hi"), **fields)


def refused(call, *args) -> APIError:
    with pytest.raises(APIError) as e:
        call(*args)
    return e.value


def test_prompt_ids_must_fit_the_vocabulary_and_the_context(models):
    lm = models.get("char")
    vocab, ctx = lm.model.config.vocab_size, lm.context
    assert check_prompt(lm, [1, 2]) == [1, 2]
    e = refused(check_prompt, lm, [1, vocab], "messages")
    assert (e.status, e.param, e.code) == (400, "messages", "invalid_value") and str(vocab) in e.message
    e = refused(check_prompt, lm, [1] * ctx)
    assert (e.status, e.code) == (400, "context_length_exceeded")


def test_completion_prompts_in_every_form(models):
    lm = models.get("char")
    ids = lm.tokenizer.encode("ab")
    assert completion_prompts(lm, completion(prompt="ab")) == ([ids], ["ab"])
    assert completion_prompts(lm, completion(prompt=["ab", "ab"])) == ([ids, ids], ["ab", "ab"])
    assert completion_prompts(lm, completion(prompt=ids)) == ([ids], ["ab"])
    assert completion_prompts(lm, completion(prompt=[ids, ids]))[0] == [ids, ids]
    # char has no <|endoftext|>: an empty prompt starts from a newline, as kiln generate does (generate.context)
    assert completion_prompts(lm, completion(prompt="")) == ([lm.tokenizer.encode("\n")], [""])
    chat = models.get("bpe-chat")
    empty, shown = completion_prompts(chat, completion(prompt=""))
    assert empty == [[chat.eos_ids[0]]] and shown == [""]  # an empty prompt starts at a document boundary


def test_options_kiln_lacks_are_refused_by_name():
    assert refused(check_completion_options, completion(suffix="x")).param == "suffix"
    assert refused(check_completion_options, completion(echo=True, logprobs=1)).param == "echo"
    check_completion_options(completion(echo=True))
    assert refused(check_choices, completion(n=16), 5).param == "n"
    assert check_choices(completion(n=16), MAX_CHOICES // 16) == 16
    assert refused(check_choices, completion(presence_penalty=0.5), 1).param == "presence_penalty"
    assert refused(check_choices, completion(frequency_penalty=-1), 1).param == "frequency_penalty"


def test_chat_checks(models):
    base, chat = models.get("char"), models.get("bpe-chat")
    assert refused(require_chat_template, base).code == "no_chat_template"
    require_chat_template(chat)
    msgs = [{"role": "user", "content": "hi"}]
    assert refused(chat_top_logprobs, ChatRequest(model="c", messages=msgs, top_logprobs=3)).param == "top_logprobs"
    assert chat_top_logprobs(ChatRequest(model="c", messages=msgs, logprobs=True, top_logprobs=3)) == 3
    stops = chat_stops(chat, ChatRequest(model="c", messages=msgs))
    assert len(stops) == 2 and chat_stops(chat, ChatRequest(model="c", messages=msgs, ignore_eos=True)) == stops[:1]


def test_sampling_params_fill_openais_defaults():
    p = sampling_params(completion(temperature=None, top_p=None, top_k=-1, stop="\n"), 7, (0,), 2)
    assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens, p.stop, p.logprobs) == (1.0, 1.0, 0, 7, ("\n",), 2)
    assert sampling_params(completion(temperature=1e-9), 1, (), 0).temperature == 0.0  # greedy, never inf
