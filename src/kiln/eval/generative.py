"""Generative tasks (GSM8K): generate answers with kiln's batched KV-cache decoder, extract, exact match, pass@k.

Every (item, sample) is one request to kiln.generate's ContinuousBatcher: up to `max_batch` rows decode together,
one forward pass per step, and a row whose answer has stopped is refilled at once by a waiting request (a
padded batch would keep computing finished rows until the longest answer ends). Sampled requests each own a
torch.Generator seeded from (seed, item, sample), so a run repeats exactly whatever the batching.

Greedy (temperature 0, one sample) is lm-evaluation-harness's gsm8k: `acc` is the strict-match exact match.
With num_samples = n > 1 every item gets n samples; `acc` is then the mean over samples (pass@1), and pass@k for
each k in pass_k uses the unbiased estimator (kiln.eval.passk).
"""

from __future__ import annotations

import warnings

import torch

from kiln.eval.extract import FILTERS, exact_match, extract
from kiln.eval.generation_settings import GenerationSettings
from kiln.eval.gsm8k import STOP_STRINGS, prompt_ids, stop_ids
from kiln.eval.metrics import mean_stderr
from kiln.eval.passk import pass_at_k
from kiln.eval.scoring import Progress
from kiln.eval.tasks import Task
from kiln.generate.batcher import ContinuousBatcher, Request
from kiln.generate.engine import Decoder, TokenEvent
from kiln.generate.sampling import SamplingParams
from kiln.model.gpt import GPT
from kiln.tokenizer import Tokenizer

# Short names of the harness's two filters, for metric keys ("exact_match_strict", "pass@4_flexible").
SHORT = {"strict-match": "strict", "flexible-extract": "flexible"}


def generate_all(
    model: GPT,
    tokenizer: Decoder,
    prompts: list[list[int]],
    params: SamplingParams,
    *,
    generators: list[torch.Generator | None] | None = None,
    max_batch: int = 32,
    on_done=None,
) -> list[str]:
    """Each prompt's generated text (cut before a stop string), decoded together by the continuous batcher.
    Prompts longer than the context less max_new_tokens keep their end (the harness's left truncation)."""
    ctx = model.config.block_size
    room = max(1, ctx - params.max_new_tokens)
    cut = sum(len(p) > room for p in prompts)
    if cut:
        warnings.warn(
            f"{cut} of {len(prompts)} prompts are longer than the model's context ({ctx}) less max_new_tokens "
            f"({params.max_new_tokens}); they keep their last {room} tokens",
            stacklevel=2,
        )
    texts = [""] * len(prompts)

    def collect(i: int):
        def on_event(ev: TokenEvent) -> None:
            texts[i] += ev.text
            if ev.finish_reason is not None and on_done is not None:
                on_done(1)

        return on_event

    batcher = ContinuousBatcher(model, tokenizer, max_batch=max_batch, max_queue=len(prompts) + 1)
    # Longest first: the prompts prefilled together are of similar length, so little padding.
    for i in sorted(range(len(prompts)), key=lambda i: -len(prompts[i])):
        gen = generators[i] if generators is not None else None
        batcher.submit(Request(list(prompts[i][-room:]), params, collect(i), index=i, generator=gen))
    while batcher.busy:
        batcher.step()
    return texts


def _generator(seed: int, item: int, sample: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + item) * 10_007 + sample)
    return g


def evaluate_generative(
    model: GPT,
    tokenizer: Tokenizer,
    task: Task,
    settings: GenerationSettings,
    *,
    num_fewshot: int = 0,
    seed: int = 1234,
    progress: bool = False,
) -> tuple[dict[str, float], list[dict[str, object]], float]:
    """(scores, per-item decisions, seconds) of one generative task."""
    settings.validate()
    n = settings.num_samples
    prompts = [prompt_ids(tokenizer, task, i, num_fewshot, seed, settings.chat) for i in range(len(task.items))]
    params = SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        stop=STOP_STRINGS,
        stop_token_ids=stop_ids(tokenizer, settings.chat),
    )
    sampled = settings.temperature > 0
    gens = [_generator(settings.seed, i, j) if sampled else None for i in range(len(prompts)) for j in range(n)]
    bar = Progress(task.name, len(prompts) * n, 1 / n, progress)
    flat = [p for p in prompts for _ in range(n)]
    texts = generate_all(model, tokenizer, flat, params, generators=gens, max_batch=settings.max_batch,
                         on_done=bar.advance)  # fmt: skip
    decisions = []
    for i, item in enumerate(task.items):
        responses = texts[i * n : (i + 1) * n]
        d: dict[str, object] = {"target": extract(item.choices[0], "strict-match"), "responses": responses}
        for name in FILTERS:
            short = SHORT[name]
            found = [extract(r, name) for r in responses]
            right = [exact_match(f, item.choices[0]) for f in found]
            d[f"extracted_{short}"] = found
            d[f"correct_{short}"] = right
            d[f"exact_match_{short}"] = sum(right) / n
            for k in settings.pass_k:
                d[f"pass@{k}_{short}"] = pass_at_k(n, sum(right), k)
        d["acc"] = d["exact_match_strict"]
        decisions.append(d)
    return generative_scores(decisions, settings), decisions, bar.seconds


def generative_scores(decisions: list[dict[str, object]], settings: GenerationSettings) -> dict[str, float]:
    """Means over items, each with its standard error; acc = strict-match exact match; random baseline 0."""
    keys = ["acc"] + [f"exact_match_{s}" for s in SHORT.values()]
    keys += [f"pass@{k}_{s}" for k in settings.pass_k for s in SHORT.values()]
    out: dict[str, float] = {}
    for key in keys:
        out[key], out[f"{key}_stderr"] = mean_stderr([float(d[key]) for d in decisions])  # type: ignore[arg-type]
    out["num_samples"] = settings.num_samples
    out["temperature"] = settings.temperature
    out["max_new_tokens"] = settings.max_new_tokens
    out["random_baseline"] = 0.0
    out["centred"] = out["acc"]
    return out
