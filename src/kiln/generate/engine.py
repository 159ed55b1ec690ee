"""Autoregressive decoding: prefill the prompt once, then one token per step through the KV cache.

One loop serves every entry point: `stream` / `stream_batch` yield a `TokenEvent` per new token (with its
log-probability and top alternatives, which the playground shows) and `generate` / `generate_batch`
collect them. Prompts of different lengths are left-padded and masked, so a batch produces exactly the
tokens each prompt would produce alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from kiln.generate.sampling import SamplingParams, make_generators, sample_next
from kiln.generate.static_decoder import static_decoder
from kiln.generate.stops import StopMatcher
from kiln.model.cpu_fast import packed_linears
from kiln.model.gpt import GPT, prefill_width


class Decoder(Protocol):
    """Anything that turns token ids back into text (every kiln tokenizer does)."""

    def decode(self, ids: list[int]) -> str: ...


@dataclass
class TokenEvent:
    """One generated token of sequence `index`.

    `text` is the newly printable text: held back while it may be the start of a stop string or an
    unfinished UTF-8 character, so concatenating every event's text gives the final output exactly.
    `logprob` and `top` come from the model's own distribution (before temperature and truncation).
    """

    index: int
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop" (stop token or string) | "length" | None while running


@dataclass
class Completion:
    tokens: list[int]
    text: str
    logprobs: list[float]
    top: list[list[tuple[int, float]]]
    finish_reason: str | None
    prompt_tokens: int

    def add(self, ev: TokenEvent) -> None:
        """Append one token event of this sequence."""
        self.tokens.append(ev.token_id)
        self.logprobs.append(ev.logprob)
        self.top.append(ev.top)
        self.text += ev.text
        if ev.finish_reason:
            self.finish_reason = ev.finish_reason


class _TextStream:
    """Incremental detokenisation + stop strings for one sequence.

    Decodes only the ids not yet printed; if that ends in U+FFFD the last token split a UTF-8 character,
    so the text waits for the next token instead of printing a replacement character.
    """

    def __init__(self, decoder: Decoder | None, stops: Sequence[str]) -> None:
        self.decoder = decoder
        self.matcher = StopMatcher(stops)
        self.pending: list[int] = []

    def push(self, token: int) -> tuple[str, bool]:
        if self.decoder is None:
            return "", False
        self.pending.append(token)
        text = self.decoder.decode(self.pending)
        if text.endswith("\ufffd"):
            return "", False
        self.pending = []
        return self.matcher.push(text)

    def finish(self) -> str:
        if self.decoder is None:
            return ""
        tail = self.decoder.decode(self.pending) if self.pending else ""
        self.pending = []
        out, stopped = self.matcher.push(tail)
        return out if stopped else out + self.matcher.flush()


def _left_pad(rows: list[list[int]], device: torch.device, width: int = 0) -> tuple[Tensor, Tensor | None]:
    """The rows right-aligned in one (B, width) batch (at least as wide as the longest), and its valid mask."""
    width = max(width, *(len(r) for r in rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        valid[i, width - len(r) :] = True
    return ids.to(device), (None if bool(valid.all()) else valid.to(device))


def stream_batch(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | None = None,
    *,
    tokenizer: Decoder | None = None,
    use_cache: bool = True,
    static_decode: bool = False,
) -> Iterator[TokenEvent]:
    """Generate continuations of several prompts at once, yielding events as tokens are chosen.

    use_cache=False recomputes the whole context every step: slow, but the reference the cache must match.
    static_decode=True decodes with fixed-shape steps over a pooled full-context cache (`static_decoder`),
    replayed as a CUDA graph on a GPU and run eagerly elsewhere; it picks the same tokens as the ordinary path.
    """
    if static_decode and not use_cache:
        raise ValueError("static_decode needs the KV cache: use_cache must be True")
    params = (params or SamplingParams()).validate()
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    ctx = model.config.block_size
    seqs = [list(map(int, p)) for p in prompts]
    for i, p in enumerate(seqs):
        if len(p) > ctx:
            warnings.warn(
                f"prompt {i} has {len(p)} tokens, more than the context of {ctx}; keeping the last {ctx}",
                stacklevel=2,
            )
            seqs[i] = p[-ctx:]
    device = model.lm_head.weight.device
    n = len(seqs)
    generators = make_generators(params.seed, n, device=device)
    streams = [_TextStream(tokenizer, params.stop) for _ in range(n)]
    done = [False] * n
    stop_ids = set(params.stop_token_ids)
    # Room for the longest prompt plus every new token (capped at the context, where decoding slides); the static
    # decoder's pooled cache spans the whole context, and its extra rows (up to the bucket) repeat the last prompt.
    static = static_decoder(model, n) if static_decode else None
    if static is not None:
        cache = static.cache
    # A bf16 model on the CPU prefills at one of a few widths (`prefill_width`), where that leaves the cache as
    # much room for the new tokens (so decoding slides past the context exactly when it would unpadded).
    longest = max(map(len, seqs))
    width = prefill_width(model, longest, ctx - params.max_new_tokens) if use_cache and static is None else longest
    if static is None:
        cache = model.new_cache(n, min(ctx, width + params.max_new_tokens)) if use_cache else None
    filler = static.rows - n if static is not None else 0

    def window_logits() -> Tensor:
        """Forward the last `ctx` tokens of every sequence from scratch (prefill, or the slide past the context)."""
        rows = [s[-ctx:] for s in seqs]
        ids, valid = _left_pad(rows + rows[-1:] * filler, device, width)
        if cache is not None:
            cache.reset()
        logits = model(ids, cache=cache, valid=valid)[0][:, -1]
        if static is not None:
            static.step.sync()
        return logits[:n]

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), packed_linears(model):
            logits = window_logits()
            for step in range(params.max_new_tokens):
                context = seqs if params.repetition_penalty != 1.0 else None
                chosen = sample_next(logits, params, context, generators).tolist()
                logp = torch.log_softmax(logits.float(), dim=-1)
                chosen_lp = logp.gather(1, torch.tensor(chosen, device=device)[:, None])[:, 0].tolist()
                tops: list[list[tuple[int, float]]] = [[] for _ in range(n)]
                if params.logprobs:
                    # The alternatives come from the same raw distribution as the chosen token's logprob
                    # (see sampling.top_logprobs for why raw), so one log_softmax serves both.
                    values, ids = logp.topk(min(params.logprobs, logp.shape[-1]), dim=-1)
                    tops = [list(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
                last = step == params.max_new_tokens - 1
                for i in range(n):
                    if done[i]:
                        continue
                    tok = chosen[i]
                    seqs[i].append(tok)
                    if tok in stop_ids:
                        done[i] = True
                        yield TokenEvent(i, tok, chosen_lp[i], tops[i], streams[i].finish(), "stop")
                        continue
                    text, stopped = streams[i].push(tok)
                    reason = "stop" if stopped else ("length" if last else None)
                    if reason == "length":
                        text += streams[i].finish()
                        if streams[i].matcher.stopped:  # a stop string completed only at the flush
                            reason = "stop"
                    done[i] = reason is not None
                    yield TokenEvent(i, tok, chosen_lp[i], tops[i], text, reason)
                if all(done):
                    break
                if cache is None or cache.length >= cache.max_len:
                    logits = window_logits()
                else:
                    last = [[s[-1]] for s in seqs]
                    step_ids = torch.tensor(last + last[-1:] * filler, device=device)  # filler: static rows only
                    if static is not None:
                        logits = static.decode(step_ids)[:n]
                    else:
                        logits = model(step_ids, cache=cache)[0][:, -1]
    finally:
        model.train(was_training)


def stream(
    model: GPT,
    prompt: Sequence[int],
    params: SamplingParams | None = None,
    *,
    tokenizer: Decoder | None = None,
    use_cache: bool = True,
    static_decode: bool = False,
) -> Iterator[TokenEvent]:
    """Stream the continuation of one prompt, token by token."""
    yield from stream_batch(
        model, [prompt], params, tokenizer=tokenizer, use_cache=use_cache, static_decode=static_decode
    )


def generate_batch(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | None = None,
    *,
    tokenizer: Decoder | None = None,
    use_cache: bool = True,
    static_decode: bool = False,
) -> list[Completion]:
    """Complete several prompts; the result for each equals generating it alone."""
    out = [Completion([], "", [], [], "length", min(len(p), model.config.block_size)) for p in prompts]
    for ev in stream_batch(
        model, prompts, params, tokenizer=tokenizer, use_cache=use_cache, static_decode=static_decode
    ):
        out[ev.index].add(ev)
    return out


def generate(
    model: GPT,
    prompt: Sequence[int],
    params: SamplingParams | None = None,
    *,
    tokenizer: Decoder | None = None,
    use_cache: bool = True,
    static_decode: bool = False,
) -> Completion:
    """Complete one prompt."""
    return generate_batch(
        model, [prompt], params, tokenizer=tokenizer, use_cache=use_cache, static_decode=static_decode
    )[0]
