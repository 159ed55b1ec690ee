"""How a generative task's answers are generated: a plain dataclass (no torch at import, so `kiln eval --help`
stays fast), validated with the sampler's own checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated (EvalConfig's generation fields)."""

    max_new_tokens: int = 256
    """The harness's max_gen_toks default."""
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    pass_k: tuple[int, ...] = (1,)
    seed: int = 1234
    max_batch: int = 32
    chat: bool | None = None
    """Prompt with the chat template (None: whenever the tokenizer has one; kiln.eval.gsm8k.use_chat_template)."""

    def validate(self) -> GenerationSettings:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_samples > 1 and self.temperature == 0:
            raise ValueError(f"num_samples={self.num_samples} with temperature=0 gives {self.num_samples} copies "
                             "of the greedy answer: set temperature > 0 to sample")  # fmt: skip
        for k in self.pass_k:
            if not 1 <= k <= self.num_samples:
                raise ValueError(f"pass_k={k} needs 1 <= k <= num_samples (num_samples={self.num_samples})")
        if self.max_batch < 1:
            raise ValueError(f"gen_batch must be >= 1, got {self.max_batch}")
        from kiln.generate.sampling import SamplingParams  # torch: not at import (kiln eval --help stays fast)

        SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens).validate()
        return self
