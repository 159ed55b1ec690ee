"""`kiln generate`: sample text from a checkpoint (or a randomly initialised preset), streamed as it is chosen."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from kiln.generate.context import end_of_text_ids, prompt_ids
from kiln.generate.engine import stream_batch
from kiln.generate.sampling import SamplingParams
from kiln.model.inference_dtype import InferenceDtype
from kiln.model.inference_dtype import prepare as prepare_dtype
from kiln.model.inference_dtype import resolve as resolve_dtype
from kiln.stage import Summary


@dataclass
class GenerateConfig:
    """A sampling run: where the model comes from, the prompt, and how each next token is chosen."""

    checkpoint: Path | None = None
    """A checkpoint directory written by kiln train (or a training run's directory: its best checkpoint)."""
    preset: str | None = None
    """Instead of a checkpoint: a model preset (see kiln model) with random weights, to see what noise looks like."""
    prompt: str = ""
    """Text to continue (empty: a document boundary, as the server starts: <|endoftext|>, else a newline)."""
    prompt_ids: list[int] = field(default_factory=list)
    """Token ids to continue instead of the prompt's text (as `kiln tokenizer encode` prints them)."""
    max_new_tokens: int = 200
    """Tokens to generate per sample (fewer if a stop string or the end-of-text token comes first: the model
    ended the document, as the server stops there too)."""
    temperature: float = 0.8
    """Divide the logits by this before sampling; 0 = greedy (always the most likely token)."""
    top_k: int = 0
    """Sample only among the k most likely tokens (0 = off)."""
    top_p: float = 1.0
    """Nucleus sampling, applied after top-k: the smallest set of tokens whose probability reaches p."""
    min_p: float = 0.0
    """Drop tokens whose probability is below min_p times the most likely token's (0 = off)."""
    repetition_penalty: float = 1.0
    """> 1 makes tokens already in the context less likely (CTRL's penalty; 1 = off)."""
    stop: list[str] = field(default_factory=list)
    """Stop strings (repeat --stop for several): generation ends before the first one appears."""
    seed: int | None = None
    """Seed of the sampler (sample i uses seed + i), so a run can be repeated exactly; none = random."""
    num_samples: int = 1
    """Independent samples of the same prompt."""
    logprobs: int = 0
    """After each sample, print each token's log-probability and this many most likely alternatives."""
    stream: bool = True
    """Print the text as it is generated; false keeps quiet and leaves the samples to the summary."""
    dtype: InferenceDtype = "float32"
    """Precision to decode in: float32 (exact), bfloat16 (half the memory traffic; 1.4-1.9x faster decoding on
    CPUs with AMX or AVX512-BF16, logits within bf16's precision), int8 (weights only, CPU: a quarter of the bytes,
    for one stream on CPUs without bf16 hardware; logits within 1-2%), or auto (bfloat16 where the hardware has it)."""

    def validate(self) -> GenerateConfig:
        resolve_dtype(self.dtype)
        if (self.checkpoint is None) == (self.preset is None):
            raise ValueError("give --checkpoint DIR (a trained model) or --preset NAME (random weights), not both")
        if self.prompt and self.prompt_ids:
            raise ValueError("give prompt (text) or prompt_ids (token ids), not both")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        self.sampling().validate()
        return self

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_new_tokens,
            stop=tuple(self.stop),
            seed=self.seed,
            logprobs=self.logprobs,
        )


@dataclass
class GenerateSummary(Summary):
    """The samples (prompt + continuation) and, with logprobs, one table line per generated token."""

    samples: list[str]
    tables: list[list[str]]
    streamed: bool

    def render(self) -> str:
        if self.streamed:  # already on the terminal, as it was generated
            return ""
        out: list[str] = []
        for i, (text, table) in enumerate(zip(self.samples, self.tables, strict=True)):
            if len(self.samples) > 1:
                out.append(f"--- sample {i + 1} ---")
            out += [text, *table]
        return "\n".join(out)


def run(config: GenerateConfig) -> GenerateSummary:
    import torch

    from kiln.model import build
    from kiln.model.checkpoint import load_checkpoint
    from kiln.tokenizer import ByteTokenizer
    from kiln.tokenizer.ids import check_token_ids

    config.validate()
    params = config.sampling().validate()
    if config.checkpoint is not None:
        model, tokenizer, _ = load_checkpoint(config.checkpoint)
    else:
        torch.manual_seed(config.seed or 0)
        model = build(str(config.preset)).eval()
        tokenizer = None
        print(f"(randomly initialised {config.preset}: expect noise)", file=sys.stderr)
    model = prepare_dtype(model, config.dtype)
    tokenizer = tokenizer or ByteTokenizer()
    if config.prompt_ids:
        prompt = check_token_ids(config.prompt_ids, model.config.vocab_size, "the model's vocabulary", "prompt_ids")
        shown = tokenizer.decode(prompt)
    else:
        prompt, shown = prompt_ids(tokenizer, config.prompt), config.prompt
    params = replace(params, stop_token_ids=end_of_text_ids(tokenizer))
    echo = (lambda s: print(s, end="", flush=True)) if config.stream else (lambda s: None)
    samples, tables = [], []
    n = config.num_samples
    for i in range(n):
        if n > 1:
            echo(f"--- sample {i + 1} ---\n")
        sample_params = params if params.seed is None else replace(params, seed=params.seed + i)
        echo(shown)
        events, text = [], shown
        for ev in stream_batch(model, [prompt], sample_params, tokenizer=tokenizer):
            echo(ev.text)
            text += ev.text
            events.append(ev)
        echo("\n")
        table = []
        if config.logprobs:
            for ev in events:
                alts = "  ".join(f"{tokenizer.decode([t])!r} {p:.2f}" for t, p in ev.top)
                table.append(f"{tokenizer.decode([ev.token_id])!r:>12} {ev.logprob:7.3f} | {alts}")
                echo(table[-1] + "\n")
        samples.append(text)
        tables.append(table)
    return GenerateSummary(samples=samples, tables=tables, streamed=config.stream)
