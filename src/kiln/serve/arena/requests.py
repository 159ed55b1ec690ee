"""The arena's request bodies. Field ranges are declared here, so a bad value is a 400 naming the field before
any model is loaded; the sampling fields reuse the OpenAI routes' ranges (kiln.serve.protocol)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from kiln.serve.protocol import Penalty, Temperature, UnitClosed, UnitOpen

# The work one battle may ask for: two generations of at most MAX_TOKENS each, from a prompt of at most
# MAX_PROMPT_CHARS. An arena prompt is something a person typed; the cap keeps a script from tying up both models.
MAX_PROMPT_CHARS = 8_000
MAX_TOKENS = 512
DEFAULT_MAX_TOKENS = 64


class BattleRequest(BaseModel):
    """POST /api/arena/battle: one prompt for two models, answered blind."""

    model_config = ConfigDict(extra="ignore")
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    mode: Literal["completion", "chat"] = "completion"
    system: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = None
    models: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=2, max_length=2)] | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)] = DEFAULT_MAX_TOKENS
    temperature: Temperature = 0.8
    top_p: UnitOpen = 1.0
    top_k: Annotated[StrictInt, Field(ge=0)] = 0
    min_p: UnitClosed = 0.0
    repetition_penalty: Penalty = 1.0
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] | None = None
    stream: StrictBool = False

    def settings(self) -> dict[str, object]:
        """The sampling settings both sides use, as stored with the vote."""
        keys = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
        return {k: getattr(self, k) for k in keys}


class VoteRequest(BaseModel):
    """POST /api/arena/vote: which side won a battle."""

    model_config = ConfigDict(extra="ignore")
    battle_id: str = Field(min_length=1, max_length=100)
    winner: Literal["a", "b", "tie", "both_bad"]
