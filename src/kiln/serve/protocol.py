"""Request bodies of the API, as pydantic models: OpenAI's fields with OpenAI's meanings, plus kiln's
sampling extras (top_k, min_p, repetition_penalty, ignore_eos, return_token_ids) as extra body fields.

Ranges are declared here, so a bad value is refused before any work with a 400 that names the field.
Unknown fields are ignored, as OpenAI's own API ignores fields it does not know of a newer client.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from kiln.generate.sampling import MAX_LOGPROBS
from kiln.generate.stops import MAX_STOP_CHARS

MAX_N = 16
MAX_STOPS = 16

Temperature = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
UnitOpen = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
UnitClosed = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
# A repetition penalty near 0 divides a positive logit up to inf (float32), and the sampler then raises on the
# model's worker thread; 0.01 already multiplies a repeated token's logit by 100.
Penalty = Annotated[float, Field(ge=0.01, le=100.0, allow_inf_nan=False)]
PresencePenalty = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
TokenId = Annotated[StrictInt, Field(ge=0)]
# Each stop string is capped (kiln.generate.stops), so a request is refused with a 400 naming `stop` before any work.
StopString = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
StopList = Annotated[list[Annotated[StopString, Field(min_length=1)]], Field(max_length=MAX_STOPS)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class SamplingFields(BaseModel):
    """What completions and chat share."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    temperature: Temperature | None = 1.0
    top_p: UnitOpen | None = 1.0
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] | None = 1
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    stop: StopString | StopList | None = None
    seed: Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)] | None = None
    presence_penalty: PresencePenalty | None = 0.0
    frequency_penalty: PresencePenalty | None = 0.0
    user: str | None = None
    # kiln's extras (vLLM names them the same)
    top_k: Annotated[StrictInt, Field(ge=-1)] | None = 0
    min_p: UnitClosed | None = 0.0
    repetition_penalty: Penalty | None = 1.0
    ignore_eos: StrictBool = False
    return_token_ids: StrictBool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_not_too_long(cls, v: object) -> object:
        # Before the union is tried, so the message names the cap whether `stop` is one string or a list.
        for s in [v] if isinstance(v, str) else v if isinstance(v, list) else []:
            if isinstance(s, str) and len(s) > MAX_STOP_CHARS:
                raise ValueError(f"each stop string must be at most {MAX_STOP_CHARS} characters, got one of {len(s)}")
        return v

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v == "":
            raise ValueError("a stop string must not be empty")
        return v

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(SamplingFields):
    prompt: (
        Annotated[str, Field(max_length=4_000_000)]
        | Annotated[list[str], Field(min_length=1, max_length=64)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1, max_length=64)]
    )
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = 16
    logprobs: Annotated[StrictInt, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    echo: StrictBool = False
    suffix: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ChatRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    logprobs: StrictBool | None = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=MAX_LOGPROBS)] | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: Annotated[str, Field(max_length=1_000_000)]
    tokenizers: Annotated[list[str], Field(min_length=1, max_length=8)] | None = None


class ChatTemplateRequest(BaseModel):
    """The playground's "show template": the exact prompt a conversation renders to for a model."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=1000)]


class NextTokenRequest(BaseModel):
    """The playground's sampling explainer: the raw next-token distribution after a prompt."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    prompt: Annotated[str, Field(max_length=1_000_000)] | Annotated[list[TokenId], Field(min_length=1)]
    top_n: Annotated[StrictInt, Field(ge=1, le=1000)] = 50
