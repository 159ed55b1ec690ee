"""What differs between /v1/completions and /v1/chat/completions once the prompt is token ids: the sampling
settings derived from the request, and the shape of the answer. Everything else — checks, submitting,
streaming, collecting — is one path, `respond.respond`, that takes one of these two shapes.

A shape is made per request and may keep what a stream needs between chunks (text offsets of logprobs).
"""

from __future__ import annotations

from typing import Any, Protocol

from kiln.generate.engine import TokenEvent
from kiln.generate.sampling import SamplingParams
from kiln.serve import openai_format as fmt
from kiln.serve.generation import Generation
from kiln.serve.models import LoadedModel
from kiln.serve.protocol import ChatRequest, CompletionRequest
from kiln.serve.validate import chat_stops, chat_top_logprobs, sampling_params


class Shape(Protocol):
    id_prefix: str  # of the response id: cmpl-..., chatcmpl-...
    chunk_object: str  # the "object" of each stream chunk

    def sampling(self, prompts: list[list[int]]) -> SamplingParams:
        """The settings every choice is sampled with (raises APIError for a bad combination of fields)."""
        ...

    def opening(self, gen: Generation) -> list[dict[str, Any]]:
        """Choices streamed before the first token, each in its own chunk."""
        ...

    def event_choice(self, ev: TokenEvent) -> dict[str, Any]:
        """The choice of the chunk that carries token event `ev`."""
        ...

    def body(self, rid: str, gen: Generation) -> dict[str, Any]:
        """The whole (not streamed) response once every choice has finished."""
        ...


class CompletionShape:
    """Legacy completions: choices carry `text`; `echo` repeats the prompt before the completion."""

    id_prefix = "cmpl"
    chunk_object = "text_completion"

    def __init__(self, lm: LoadedModel, body: CompletionRequest, shown: list[str]) -> None:
        self.lm, self.req, self.shown = lm, body, shown
        self.prefix: list[str] = []
        self.offsets: list[int] = []  # where each choice's next token starts in its text (logprobs' text_offset)

    def sampling(self, prompts: list[list[int]]) -> SamplingParams:
        stop_ids = () if self.req.ignore_eos else self.lm.eos_ids
        return sampling_params(self.req, self.req.max_tokens or 16, stop_ids, self.req.logprobs or 0)

    def _prefixes(self, gen: Generation) -> list[str]:
        if not self.prefix:
            n = gen.n
            self.prefix = [(self.shown[i // n] if self.req.echo else "") for i in range(len(gen.choices))]
            self.offsets = [len(p) for p in self.prefix]
        return self.prefix

    def opening(self, gen: Generation) -> list[dict[str, Any]]:
        prefix = self._prefixes(gen)
        if not any(prefix):
            return []
        return [{"index": i, "text": p, "logprobs": None, "finish_reason": None} for i, p in enumerate(prefix)]

    def event_choice(self, ev: TokenEvent) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": ev.index,
            "text": ev.text,
            "logprobs": None,
            "finish_reason": ev.finish_reason,
        }
        if self.req.logprobs is not None:
            choice["logprobs"] = fmt.completion_logprobs(
                self.lm, [ev.token_id], [ev.logprob], [ev.top], self.offsets[ev.index], self.req.return_token_ids
            )
        self.offsets[ev.index] += len(fmt.token_text(self.lm, ev.token_id))
        return choice

    def body(self, rid: str, gen: Generation) -> dict[str, Any]:
        return fmt.completion_body(
            self.lm, rid, gen.choices, gen.usage(), logprobs=self.req.logprobs, with_ids=self.req.return_token_ids,
            prefix=self._prefixes(gen), prompt_ids=[r.prompt for r in gen.requests],
        )  # fmt: skip


class ChatShape:
    """Chat completions: choices carry a `message` (a `delta` when streamed) from the assistant."""

    id_prefix = "chatcmpl"
    chunk_object = "chat.completion.chunk"

    def __init__(self, lm: LoadedModel, body: ChatRequest) -> None:
        self.lm, self.req = lm, body

    def sampling(self, prompts: list[list[int]]) -> SamplingParams:
        room = self.lm.context - len(prompts[0])
        max_tokens = self.req.max_completion_tokens or self.req.max_tokens or room
        stop_ids = chat_stops(self.lm, self.req)
        return sampling_params(self.req, max_tokens, stop_ids, chat_top_logprobs(self.req))

    def opening(self, gen: Generation) -> list[dict[str, Any]]:
        role = {"role": "assistant", "content": ""}
        return [{"index": i, "delta": role, "logprobs": None, "finish_reason": None} for i in range(len(gen.choices))]

    def event_choice(self, ev: TokenEvent) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": ev.index,
            "delta": {"content": ev.text},
            "logprobs": None,
            "finish_reason": ev.finish_reason,
        }
        if self.req.logprobs:
            choice["logprobs"] = fmt.chat_logprobs(
                self.lm, [ev.token_id], [ev.logprob], [ev.top], self.req.return_token_ids
            )
        return choice

    def body(self, rid: str, gen: Generation) -> dict[str, Any]:
        return fmt.chat_body(
            self.lm, rid, gen.choices, gen.usage(), logprobs=bool(self.req.logprobs),
            with_ids=self.req.return_token_ids, prompt_ids=gen.requests[0].prompt,
        )  # fmt: skip
