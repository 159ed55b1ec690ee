"""From an API request to token events: one batcher request per choice, events handed to asyncio.

The batcher's worker thread calls `on_event`; `loop.call_soon_threadsafe` moves each event onto an
asyncio queue that the request handler reads, so a handler never blocks the event loop and the worker
never waits for a slow client. When the handler stops reading (the client went away, pressed Stop, or
an error), every choice is cancelled and the batcher frees their rows at its next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import torch

from kiln.generate.batcher import QueueFull, Request
from kiln.generate.engine import Completion, TokenEvent
from kiln.generate.sampling import SamplingParams
from kiln.serve.errors import APIError
from kiln.serve.metrics import Metrics
from kiln.serve.models import LoadedModel


class Choice(Completion):
    """What one choice has produced so far (a Completion that grows, plus its index)."""

    def __init__(self, index: int, prompt_tokens: int) -> None:
        super().__init__([], "", [], [], None, prompt_tokens)
        self.index = index


def generator_for(seed: int | None, index: int) -> torch.Generator | None:
    """Choice `index` of a seeded request draws from seed + index, so n > 1 choices differ and each is the
    same whether streamed or not, batched with others or alone."""
    if seed is None:
        return None
    g = torch.Generator()
    g.manual_seed((seed + index) & 0xFFFF_FFFF_FFFF_FFFF)
    return g


class Generation:
    """The choices of one API request, submitted to a model's batcher."""

    def __init__(
        self,
        lm: LoadedModel,
        prompts: list[list[int]],
        params: list[SamplingParams],
        seed: int | None,
        metrics: Metrics,
        n: int = 1,
    ) -> None:
        """`prompts` holds each prompt `n` times in a row (its n choices); usage counts each prompt once."""
        self.lm, self.metrics, self.n = lm, metrics, n
        self.choices = [Choice(i, len(p)) for i, p in enumerate(prompts)]
        self.queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.requests = [
            Request(p, sp, lambda ev: loop.call_soon_threadsafe(self.queue.put_nowait, ev), i, generator_for(seed, i))
            for i, (p, sp) in enumerate(zip(prompts, params, strict=True))
        ]
        self.started = time.perf_counter()
        self.first_token_at: float | None = None

    def submit(self) -> None:
        try:
            for r in self.requests:
                self.lm.batcher.submit(r)
        except QueueFull as e:
            self.cancel()
            raise APIError(429, f"the server is busy ({e}); retry later", code="queue_full") from None
        except ValueError as e:
            self.cancel()
            raise APIError(400, str(e), param="prompt", code="context_length_exceeded") from None

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()
        self.lm.batcher.wake()

    @property
    def prompt_tokens(self) -> int:
        # The n choices of one prompt share it: OpenAI counts its tokens once, not n times.
        return sum(c.prompt_tokens for c in self.choices[:: self.n])

    @property
    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.choices)

    def usage(self) -> dict[str, int]:
        p, c = self.prompt_tokens, self.completion_tokens
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def events(self) -> AsyncIterator[TokenEvent]:
        """Every token event of every choice, as they come; cancels what is left if the reader stops."""
        remaining = len(self.choices)
        try:
            while remaining:
                ev = await self.queue.get()
                c = self.choices[ev.index]
                if ev.finish_reason == "error":
                    c.finish_reason = "error"
                    remaining -= 1
                    raise APIError(
                        500, "generation failed inside the model server (see its log); retry", code="server_error"
                    )
                if ev.finish_reason == "cancelled":
                    c.finish_reason = c.finish_reason or "abort"
                    remaining -= 1
                    yield ev
                    continue
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                    self.metrics.ttft.observe(self.first_token_at - self.started)
                c.add(ev)
                if ev.finish_reason:
                    remaining -= 1
                yield ev
        finally:
            if remaining:
                self.cancel()
            self._record()

    def _record(self) -> None:
        elapsed = time.perf_counter() - self.started
        n = self.completion_tokens
        self.metrics.prompt_tokens.inc(self.prompt_tokens)
        self.metrics.completion_tokens.inc(n)
        if n and self.first_token_at is not None and elapsed > self.first_token_at - self.started:
            decode_time = elapsed - (self.first_token_at - self.started)
            if n > 1 and decode_time > 0:
                self.metrics.tokens_per_second.observe((n - 1) / decode_time)
