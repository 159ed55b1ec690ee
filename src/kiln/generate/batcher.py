"""Continuous batching: independent requests decode together, one batched forward pass per step.

A request joins between steps (its prompt is prefilled alone, then its keys and values are copied into a
free row of one shared KV cache) and leaves between steps (its row is freed by moving the last active row
into it). So a short request never waits for a long one, a new one starts at once, and the model always
runs on exactly the active rows — the scheduling of vLLM and the llama.cpp server, on kiln's own cache.

Rows are aligned on the right: every active sequence ends at the same cache slot (`cache.length`), its
tokens fill the slots just before that, and the slots before those are masked as padding. A decode step
then writes every row's new token at slot `length` — exactly what the model already does for a
left-padded batch, with positions counted per row so padding never shifts them. When the cache runs out
of slots, or too many leading columns hold only padding, the columns no active row uses are dropped.

The batcher is synchronous and single-threaded by design: `step()` does one round of admit + decode.
`run()` drives it on a worker thread for a server; `submit`, `cancel` and `call` are safe from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from kiln.generate.engine import Decoder, TokenEvent, _TextStream
from kiln.generate.sampling import SamplingParams, greedy_pick, sample_next
from kiln.model.cpu_fast import packed_linears
from kiln.model.gpt import GPT, prefill_width
from kiln.model.kv_cache import KVCache

log = logging.getLogger("kiln.generate.batcher")

PREFILL_TOKENS = 4096
"""Most padded prompt tokens prefilled in one forward pass (bounds the memory of a burst of arrivals)."""


class QueueFull(RuntimeError):
    """More requests are waiting than the batcher accepts; the caller should answer 'try again later'."""


@dataclass(eq=False)
class Request:
    """One sequence to continue. `on_event` is called on the worker thread for every new token; the
    last event has a `finish_reason`: "stop", "length", "cancelled", or "error" (sampling or the forward
    pass raised; the other requests go on)."""

    prompt: list[int]
    params: SamplingParams
    on_event: Callable[[TokenEvent], None]
    index: int = 0  # copied into each TokenEvent (the choice index of an n > 1 request)
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)
    finished: bool = False
    cancelled: bool = False
    stream: _TextStream | None = None

    def cancel(self) -> None:
        """Stop at the next step boundary (thread-safe: a flag the worker reads); its row is freed then."""
        self.cancelled = True


class ContinuousBatcher:
    """Decode many requests on one model: `submit` them, call `step` until `busy` is false (or `run`)."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Decoder | None = None,
        *,
        max_batch: int = 32,
        max_queue: int = 256,
        max_len: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ctx = model.config.block_size
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.max_queue = max_queue
        # Slack beyond the context lets the shared end slot run ahead before a compaction has to copy.
        self.cache: KVCache = model.new_cache(max_batch, max(max_len or 2 * self.ctx, self.ctx))
        self.cache.padded = True  # rows of different lengths: always pass the explicit mask
        # Masked slots still enter the attention matmuls (with weight 0), so they must hold finite numbers:
        # fresh memory may hold NaN bit patterns, and 0 * NaN is NaN.
        self.cache.k.zero_()
        self.cache.v.zero_()
        self.device = self.cache.k.device
        self.active: list[Request] = []
        self.waiting: deque[Request] = deque()
        self._calls: deque[tuple[Callable[[GPT], Any], Future]] = deque()
        self._cond = threading.Condition()
        self.steps = 0

    # ------------------------------------------------------------------ thread-safe entry points
    def submit(self, req: Request) -> None:
        """Queue a request; raises ValueError for a prompt that leaves no room in the context, QueueFull
        when `max_queue` requests are already waiting."""
        req.params.validate()
        if not req.prompt:
            raise ValueError("the prompt needs at least one token")
        if len(req.prompt) >= self.ctx:
            raise ValueError(
                f"the prompt has {len(req.prompt)} tokens; this model's context is {self.ctx} tokens, "
                f"so a prompt may have at most {self.ctx - 1}"
            )
        req.stream = _TextStream(self.tokenizer, req.params.stop)
        with self._cond:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting")
            self.waiting.append(req)
            self._cond.notify()

    def call(self, fn: Callable[[GPT], Any]) -> Future:
        """Run `fn(model)` on the worker between two steps (the model is never used by two threads)."""
        fut: Future = Future()
        with self._cond:
            self._calls.append((fn, fut))
            self._cond.notify()
        return fut

    def wake(self) -> None:
        """Let a waiting worker notice a cancelled request or a stop request."""
        with self._cond:
            self._cond.notify()

    @property
    def busy(self) -> bool:
        return bool(self.active or self.waiting or self._calls)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def run(self, stop: threading.Event) -> None:
        """Worker loop: step while there is work, sleep on the condition otherwise, until `stop` is set."""
        while not stop.is_set():
            with self._cond:
                while not self.busy and not stop.is_set():
                    self._cond.wait(timeout=1.0)
            if stop.is_set():
                break
            try:
                self.step()
            except Exception:
                log.exception("decoding step failed; ending the requests in the batch")
                for req in self.active:
                    self._finish(req, "error")
                self.active.clear()
        for req in [*self.active, *self.waiting]:
            self._finish(req, "cancelled")
        self.active.clear()
        self.waiting.clear()

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        """Run queued calls, admit waiting requests into free rows (prefill), then decode one token for
        every active row."""
        while self._calls:
            with self._cond:
                fn, fut = self._calls.popleft()
            if fut.set_running_or_notify_cancel():
                try:
                    with torch.inference_mode():
                        fut.set_result(fn(self.model))
                except BaseException as e:
                    fut.set_exception(e)
        with torch.inference_mode(), packed_linears(self.model):
            self._release()
            self._admit()
            if self.active:
                self._decode()
                self._release()
        self.steps += 1

    def _admit(self) -> None:
        """Move waiting requests into free rows: their prompts are prefilled together (left-padded, in
        groups of at most `PREFILL_TOKENS` padded tokens), then each row is copied into the shared cache
        and samples its first token at once."""
        joining: list[Request] = []
        with self._cond:
            while self.waiting and len(self.active) + len(joining) < self.max_batch:
                req = self.waiting.popleft()
                if req.cancelled:
                    self._finish(req, "cancelled")
                else:
                    joining.append(req)
        while joining:
            group = [joining.pop(0)]
            while joining and (len(group) + 1) * max(len(r.prompt) for r in [*group, joining[0]]) <= PREFILL_TOKENS:
                group.append(joining.pop(0))
            # A bf16 model on the CPU prefills at one of a few widths: each new prompt length would build new
            # oneDNN kernels for every layer (`prefill_width`; `_place` copies each row's own slots).
            width = prefill_width(self.model, max(len(r.prompt) for r in group), self.model.config.block_size)
            ids = torch.zeros(len(group), width, dtype=torch.long)
            valid = torch.zeros(len(group), width, dtype=torch.bool)
            for j, r in enumerate(group):
                ids[j, width - len(r.prompt) :] = torch.tensor(r.prompt, dtype=torch.long)
                valid[j, width - len(r.prompt) :] = True
            tmp = self.model.new_cache(len(group), width)
            logits = self.model(ids.to(self.device), cache=tmp, valid=valid.to(self.device))[0][:, -1]
            for j, r in enumerate(group):
                self._place(tmp, j, len(r.prompt))
                self.active.append(r)
            self._choose(group, logits)
            self._release()

    def _decode(self) -> None:
        c = self.cache
        n = len(self.active)
        starts = c.length - c.n_valid[:n]
        first_used = int(starts.min())
        if c.length >= c.max_len or first_used >= max(32, c.length // 2):
            self._shift(-first_used)
        view = c.rows(n)
        ids = torch.tensor([[r.tokens[-1]] for r in self.active], dtype=torch.long, device=self.device)
        logits = self.model(ids, cache=view)[0][:, -1]
        c.length = view.length
        self._choose(self.active, logits)

    # ------------------------------------------------------------------ cache rows
    def _place(self, tmp: KVCache, j: int, p: int) -> None:
        """Copy row `j` of a prefill cache (its prompt of `p` tokens ends at the last slot) into the next
        free row, ending at the shared end slot."""
        c = self.cache
        r = len(self.active)
        if r == 0:
            c.length = p  # nothing else is live: start the columns afresh
        elif c.length < p:
            self._shift(p - c.length)
        end, w = c.length, tmp.length
        c.k[:, r, :, end - p : end] = tmp.k[:, j, :, w - p : w]
        c.v[:, r, :, end - p : end] = tmp.v[:, j, :, w - p : w]
        c.valid[r] = False
        c.valid[r, end - p : end] = True
        c.pos[r, end - p : end] = torch.arange(p, device=self.device)
        c.n_valid[r] = p

    def _shift(self, d: int) -> None:
        """Move every active row's columns by `d` slots (negative: drop leading padding columns; positive:
        make room on the left for a prompt longer than the current end slot)."""
        c = self.cache
        n, length = len(self.active), c.length
        if d == 0 or n == 0:
            return
        if d < 0:
            keep = slice(-d, length)
            for t in (c.k, c.v):
                t[:, :n, :, : length + d] = t[:, :n, :, keep].clone()
            c.pos[:n, : length + d] = c.pos[:n, keep].clone()
            c.valid[:n, : length + d] = c.valid[:n, keep].clone()
        else:
            for t in (c.k, c.v):
                t[:, :n, :, d : d + length] = t[:, :n, :, :length].clone()
            c.pos[:n, d : d + length] = c.pos[:n, :length].clone()
            c.valid[:n, d : d + length] = c.valid[:n, :length].clone()
            c.valid[:n, :d] = False
        c.length = length + d

    def _move_row(self, src: int, dst: int) -> None:
        c = self.cache
        end = c.length
        c.k[:, dst, :, :end] = c.k[:, src, :, :end]
        c.v[:, dst, :, :end] = c.v[:, src, :, :end]
        c.pos[dst, :end] = c.pos[src, :end]
        c.valid[dst] = c.valid[src]
        c.n_valid[dst] = c.n_valid[src]

    def _release(self) -> None:
        """Free the rows of finished or cancelled requests, keeping the active rows contiguous from 0."""
        i = 0
        while i < len(self.active):
            req = self.active[i]
            if req.cancelled and not req.finished:
                self._finish(req, "cancelled")
            if req.finished:
                last = len(self.active) - 1
                if i != last:
                    self._move_row(last, i)
                    self.active[i] = self.active[last]
                self.active.pop()
                continue
            i += 1

    # ------------------------------------------------------------------ sampling and events
    def _choose(self, reqs: list[Request], logits: Tensor) -> None:
        """Pick each row's next token with its own parameters and generator, then emit its event."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        greedy = [r.params.temperature == 0 and r.params.repetition_penalty == 1.0 for r in reqs]
        argmax = greedy_pick(logits).tolist() if any(greedy) else []
        chosen: list[int] = []
        for i, r in enumerate(reqs):
            if greedy[i]:
                chosen.append(argmax[i])
                continue
            context = [r.prompt + r.tokens] if r.params.repetition_penalty != 1.0 else None
            gens = [r.generator] if r.generator is not None else None
            try:
                chosen.append(int(sample_next(logits[i : i + 1], r.params, context, gens)[0]))
            except RuntimeError:  # e.g. NaN probabilities from extreme settings: that request fails alone
                log.exception("sampling failed for one request")
                self._finish(r, "error")
                chosen.append(argmax[i] if argmax else int(logits[i].argmax()))
        chosen_lp = logp.gather(1, torch.tensor(chosen, device=logp.device)[:, None])[:, 0].tolist()
        k = max(r.params.logprobs for r in reqs)
        tops: list[list[tuple[int, float]]] = [[] for _ in reqs]
        if k:
            values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
            tops = [list(zip(a, b, strict=True)) for a, b in zip(ids.tolist(), values.tolist(), strict=True)]
        for i, r in enumerate(reqs):
            if not r.finished:
                self._advance(r, chosen[i], chosen_lp[i], tops[i][: r.params.logprobs])

    def _advance(self, r: Request, tok: int, logprob: float, top: list[tuple[int, float]]) -> None:
        if r.cancelled:
            self._finish(r, "cancelled")
            return
        r.tokens.append(tok)
        assert r.stream is not None
        if tok in r.params.stop_token_ids:
            self._emit(r, TokenEvent(r.index, tok, logprob, top, r.stream.finish(), "stop"))
            return
        text, stopped = r.stream.push(tok)
        reason = None
        if stopped:
            reason = "stop"
        elif len(r.tokens) >= r.params.max_new_tokens or len(r.prompt) + len(r.tokens) >= self.ctx:
            reason = "length"
            text += r.stream.finish()
            if r.stream.matcher.stopped:  # a stop string that completed only at the flush
                reason = "stop"
        self._emit(r, TokenEvent(r.index, tok, logprob, top, text, reason))

    def _emit(self, r: Request, ev: TokenEvent) -> None:
        if ev.finish_reason is not None:
            r.finished = True
        try:
            r.on_event(ev)
        except Exception:
            r.cancelled = True
            r.finished = True

    def _finish(self, r: Request, reason: str) -> None:
        if r.finished:
            return
        r.finished = True
        with contextlib.suppress(Exception):
            r.on_event(TokenEvent(r.index, -1, 0.0, [], "", reason))
