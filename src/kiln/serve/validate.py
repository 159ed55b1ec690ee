"""Request checks past what pydantic's field ranges can say: each needs the model (its vocabulary, context,
tokenizer) or looks at several fields at once. Plain functions raising `APIError`, no FastAPI, so each is
unit-testable with a loaded model and a request object.
"""

from __future__ import annotations

from kiln.generate.context import start_ids
from kiln.generate.sampling import SamplingParams
from kiln.serve.chat import chat_stop_ids
from kiln.serve.errors import APIError, bad_param
from kiln.serve.models import LoadedModel
from kiln.serve.protocol import ChatRequest, CompletionRequest, SamplingFields
from kiln.tokenizer.chat import CHAT_TOKENS

MAX_CHOICES = 64
MIN_TEMPERATURE = 1e-5  # below this, sampling is greedy decoding


def encode(lm: LoadedModel, text: str) -> list[int]:
    """`text` in the model's tokenizer; 400 (param prompt) if it cannot be encoded."""
    try:
        return lm.tokenizer.encode(text)
    except ValueError as e:
        raise bad_param("prompt", f"the prompt cannot be encoded by this model's tokenizer: {e}") from None


def default_start(lm: LoadedModel) -> list[int]:
    """Where an empty prompt starts (the same context as `kiln generate`'s); 400 if the vocabulary has none."""
    try:
        return start_ids(lm.tokenizer)
    except ValueError as e:
        raise bad_param("prompt", str(e)) from None


def check_prompt(lm: LoadedModel, ids: list[int], param: str = "prompt") -> list[int]:
    """`ids` if every id is in the model's vocabulary and one new token still fits in its context."""
    vocab = lm.model.config.vocab_size
    bad = next((i for i in ids if i >= vocab), None)
    if bad is not None:
        raise bad_param(param, f"token id {bad} is not in this model's vocabulary of {vocab}")
    if len(ids) >= lm.context:
        raise APIError(
            400,
            f"this model's maximum context length is {lm.context} tokens; the prompt has {len(ids)} tokens "
            f"(at most {lm.context - 1}, to leave room for one new token)",
            param=param,
            code="context_length_exceeded",
        )
    return ids


def check_completion_options(body: CompletionRequest) -> None:
    """Refuse the legacy completion options kiln does not implement (before any model is loaded)."""
    if body.suffix:
        raise bad_param("suffix", "suffix (insertion) is not supported: kiln's models are left-to-right only")
    if body.echo and body.logprobs is not None:
        raise bad_param("echo", "echo together with logprobs is not supported")


def completion_prompts(lm: LoadedModel, body: CompletionRequest) -> tuple[list[list[int]], list[str]]:
    """The prompt(s) of a completion request as token ids, and each as text (what `echo` repeats).

    `prompt` may be a string, a list of strings, a list of ids or a list of id lists. An empty string
    starts from a document boundary (<|endoftext|>, else a newline), as `kiln generate` does: `start_ids`.
    """
    p = body.prompt
    if isinstance(p, str):
        texts: list[str | None] = [p]
    elif p and all(isinstance(x, int) for x in p):
        texts = [None]
        rows: list[list[int]] = [list(p)]  # type: ignore[arg-type]
    elif p and all(isinstance(x, str) for x in p):
        texts = list(p)  # type: ignore[arg-type]
    else:
        texts = [None] * len(p)
        rows = [list(x) for x in p]  # type: ignore[union-attr]
    if texts and texts[0] is not None:
        rows = []
        for t in texts:
            rows.append(encode(lm, t or "") or default_start(lm))
        shown = [t or "" for t in texts]
    else:
        shown = [lm.tokenizer.decode(r) for r in rows]
    return [check_prompt(lm, r) for r in rows], shown


def require_chat_template(lm: LoadedModel) -> None:
    """400 for a base model: without ChatML's tokens it cannot tell turns apart."""
    if not lm.has_chat_template:
        raise APIError(
            400,
            f"the model '{lm.name}' has no chat template (its tokenizer lacks {' and '.join(CHAT_TOKENS)}): "
            "it is a base model; use /v1/completions",
            param="model",
            code="no_chat_template",
        )


def check_choices(body: SamplingFields, n_prompts: int) -> int:
    """The number of choices per prompt, `n`, within the per-request cap; refuses OpenAI's penalties kiln lacks."""
    n = body.n or 1
    if n * n_prompts > MAX_CHOICES:
        raise bad_param("n", f"n x prompts = {n * n_prompts} choices; at most {MAX_CHOICES} per request")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise bad_param(name, f"{name} is not supported by kiln; use repetition_penalty (an extra body field)")
    return n


def chat_top_logprobs(body: ChatRequest) -> int:
    """How many alternatives per token a chat request asks for (OpenAI's rule: top_logprobs needs logprobs)."""
    top = body.top_logprobs or 0
    if top and not body.logprobs:
        raise bad_param("top_logprobs", "top_logprobs needs logprobs: true")
    return top


def chat_stops(lm: LoadedModel, body: ChatRequest) -> tuple[int, ...]:
    """<|im_end|> always ends the reply; <|endoftext|> too unless ignore_eos."""
    stops = chat_stop_ids(lm)
    return stops[:1] if body.ignore_eos else stops


def sampling_params(body: SamplingFields, max_tokens: int, stop_ids: tuple[int, ...], logprobs: int) -> SamplingParams:
    """The batcher's SamplingParams for a request, with OpenAI's defaults for the fields left out."""
    top_k = body.top_k or 0
    temperature = 1.0 if body.temperature is None else body.temperature
    if temperature < MIN_TEMPERATURE:
        # Greedy, as in vLLM: logits / 1e-40 overflow float32 to inf, the softmax gives NaN, and
        # torch.multinomial raises on the batcher's worker thread, which kills the model for everyone.
        temperature = 0.0
    return SamplingParams(
        temperature=temperature,
        top_k=0 if top_k < 0 else top_k,
        top_p=1.0 if body.top_p is None else body.top_p,
        min_p=body.min_p or 0.0,
        repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
        max_new_tokens=max_tokens,
        stop_token_ids=stop_ids,
        stop=body.stops(),
        logprobs=logprobs,
    ).validate()
