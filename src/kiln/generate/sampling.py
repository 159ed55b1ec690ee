"""Turning next-token logits into a choice of token.

Every ``apply_*`` function takes logits of shape ``(B, V)`` and returns a new tensor of the same shape; the
input is never modified. Tokens that a filter removes get a logit of ``-inf`` so that a later softmax gives
them exactly zero probability.

The order in :func:`process_logits` is repetition penalty -> temperature -> top-k -> top-p -> min-p, the
order used by Hugging Face ``generate`` and vLLM, so the same parameters mean the same thing here as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

from kiln.generate.stops import MAX_STOP_CHARS

__all__ = [
    "SamplingParams",
    "apply_min_p",
    "apply_repetition_penalty",
    "apply_temperature",
    "apply_top_k",
    "apply_top_p",
    "make_generators",
    "process_logits",
    "sample_next",
    "top_logprobs",
]

MAX_LOGPROBS = 20


def _check_float(name: str, value: object, ok: bool, allowed: str) -> None:
    # NaN fails every comparison and inf passes some, so finiteness is checked explicitly.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number {allowed}, got {value!r}")
    if not math.isfinite(value) or not ok:
        raise ValueError(f"{name} must be {allowed}, got {value}")


def _check_int(name: str, value: object, ok: bool, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value}")


@dataclass
class SamplingParams:
    """How to choose each next token, and when to stop.

    ``temperature == 0`` means greedy decoding. ``stop`` and ``stop_token_ids`` may be given as lists (or a
    single string / int); they are stored as tuples so that params are hashable-ish and safe to share.
    Call :meth:`validate` before use; it returns ``self`` so it can be chained.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 64
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int = 0

    def __post_init__(self) -> None:
        # A bare string would otherwise become a tuple of its characters, i.e. one stop per character.
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        else:
            self.stop = tuple(self.stop)
        if isinstance(self.stop_token_ids, Integral):
            self.stop_token_ids = (self.stop_token_ids,)
        else:
            self.stop_token_ids = tuple(self.stop_token_ids)

    def validate(self) -> SamplingParams:
        """Raise ``ValueError`` naming the parameter, its allowed range and the bad value; return ``self``."""
        t = self.temperature
        _check_float("temperature", t, isinstance(t, Real) and t >= 0, ">= 0 (0 = greedy)")
        k = self.top_k
        _check_int("top_k", k, isinstance(k, Integral) and k >= 0, ">= 0 (0 = off)")
        p = self.top_p
        _check_float("top_p", p, isinstance(p, Real) and 0 < p <= 1, "in (0, 1]")
        m = self.min_p
        _check_float("min_p", m, isinstance(m, Real) and 0 <= m <= 1, "in [0, 1]")
        r = self.repetition_penalty
        _check_float("repetition_penalty", r, isinstance(r, Real) and r > 0, "> 0")
        n = self.max_new_tokens
        _check_int("max_new_tokens", n, isinstance(n, Integral) and n >= 1, ">= 1")
        lp = self.logprobs
        _check_int("logprobs", lp, isinstance(lp, Integral) and 0 <= lp <= MAX_LOGPROBS, f"in [0, {MAX_LOGPROBS}]")
        for tid in self.stop_token_ids:
            if isinstance(tid, bool) or not isinstance(tid, Integral) or tid < 0:
                raise ValueError(f"stop_token_ids must be integers >= 0, got {tid!r}")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop strings must be non-empty str, got {s!r}")
            if len(s) > MAX_STOP_CHARS:
                raise ValueError(f"stop strings must be at most {MAX_STOP_CHARS} characters, got one of {len(s)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, Integral)):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        return self


def _check_2d(logits: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")


def _context_mask(context: Tensor | list, batch: int, vocab: int, device: torch.device) -> Tensor:
    """Boolean (B, V) mask of the token ids present in each row of ``context``.

    Negative ids in a tensor context are treated as padding, so a ragged batch may also be passed as a
    padded tensor.
    """
    if isinstance(context, Tensor):
        ctx = context.to(device=device, dtype=torch.long)
        if ctx.dim() == 1:
            ctx = ctx.unsqueeze(0)
        if ctx.dim() != 2 or ctx.shape[0] != batch:
            raise ValueError(f"context must have shape ({batch}, L), got {tuple(context.shape)}")
        if ctx.numel() and int(ctx.max()) >= vocab:
            raise ValueError(f"context holds token id {int(ctx.max())} >= vocab size {vocab}")
        # Padding (< 0) is sent to an extra dummy column that is dropped afterwards.
        idx = torch.where(ctx < 0, torch.full_like(ctx, vocab), ctx)
        mask = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=device)
        mask.scatter_(1, idx, True)
        return mask[:, :vocab]
    rows = list(context)
    if len(rows) != batch:
        raise ValueError(f"context has {len(rows)} rows but logits have {batch}")
    # Gather all (row, id) pairs on the CPU and index once: one host->device copy, not one per row.
    per_row = [torch.as_tensor(row, dtype=torch.long).reshape(-1).cpu() for row in rows]
    cols = torch.cat(per_row) if per_row else torch.zeros(0, dtype=torch.long)
    mask = torch.zeros(batch, vocab, dtype=torch.bool, device=device)
    if cols.numel() == 0:
        return mask
    if int(cols.min()) < 0 or int(cols.max()) >= vocab:
        raise ValueError(f"context holds a token id outside [0, {vocab})")
    lengths = torch.tensor([len(r) for r in per_row])
    row_idx = torch.repeat_interleave(torch.arange(batch), lengths)
    mask[row_idx.to(device), cols.to(device)] = True
    return mask


def apply_repetition_penalty(logits: Tensor, context: Tensor | list[list[int]], penalty: float) -> Tensor:
    """CTRL-style repetition penalty (Keskar et al. 2019), as in Hugging Face and vLLM.

    Every token id that occurs in the row's context (prompt + generated so far) is made less likely:
    a positive logit is divided by ``penalty``, a negative one multiplied by it. Dividing a negative logit
    would move it *towards* zero, i.e. make the token more likely, hence the sign split. Each id is
    penalised once however often it occurs.

    ``context`` is a ``(B, L)`` long tensor (negative ids = padding) or a list of per-row id lists of
    different lengths.
    """
    _check_2d(logits)
    if penalty == 1.0:
        return logits.clone()
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    batch, vocab = logits.shape
    mask = _context_mask(context, batch, vocab, logits.device)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(mask, penalised, logits)


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide by ``temperature`` (> 0): below 1 sharpens the distribution, above 1 flattens it.

    ``temperature == 0`` (greedy) is not a limit this function can compute; callers take the argmax instead.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 here (0 = greedy is handled by the caller), got {temperature}")
    return logits / temperature


def apply_top_k(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` highest logits in each row, set the rest to ``-inf``.

    ``k == 0`` or ``k >= V`` leaves the logits unchanged. Tokens tied with the k-th value are all kept, so a
    row may keep a few more than ``k``; dropping some of a tie would be an arbitrary choice.
    """
    _check_2d(logits)
    if k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {k}")
    if k == 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2019): keep the smallest set of most probable tokens whose total
    probability is >= ``p``; the most probable token is always kept.

    The probabilities are those of ``logits`` as given (after temperature and top-k in
    :func:`process_logits`). Running it after top-k means ``p`` is a fraction of the mass left by top-k,
    which is the convention of Hugging Face and vLLM; the other order gives a different (larger) set.
    """
    _check_2d(logits)
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if p >= 1.0:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # A token is needed iff the mass of the tokens ranked above it is still short of p.
    mass_before = torch.cumsum(probs, dim=-1) - probs
    keep_sorted = mass_before < p
    keep_sorted[:, 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def apply_min_p(logits: Tensor, min_p: float) -> Tensor:
    """Min-p filtering (Nguyen et al. 2024): keep tokens with ``p >= min_p * p_max``.

    Unlike top-p the cut-off scales with the model's confidence: a peaked distribution keeps few tokens, a
    flat one many. Computed in log space (``logit - max_logit >= log(min_p)``), which is the same test
    without the underflow of tiny probabilities.
    """
    _check_2d(logits)
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    if min_p == 0:
        return logits.clone()
    top = logits.max(dim=-1, keepdim=True).values
    keep = (logits - top) >= math.log(min_p)
    return logits.masked_fill(~keep, float("-inf"))


def process_logits(logits: Tensor, params: SamplingParams, context=None) -> Tensor:
    """Apply repetition penalty -> temperature -> top-k -> top-p -> min-p to ``(B, V)`` logits.

    Computed in float32 whatever the model's dtype: bf16/fp16 logits lose too much precision in the
    softmax and cumulative sums. With ``temperature == 0`` only the repetition penalty is applied, since
    greedy decoding takes the argmax and the filters cannot change it.
    """
    _check_2d(logits)
    x = logits.to(torch.float32)
    if params.repetition_penalty != 1.0 and context is not None:
        x = apply_repetition_penalty(x, context, params.repetition_penalty)
    if params.temperature == 0:
        return x
    x = apply_temperature(x, params.temperature)
    x = apply_top_k(x, params.top_k)
    x = apply_top_p(x, params.top_p)
    x = apply_min_p(x, params.min_p)
    return x


def greedy_pick(logits: Tensor) -> Tensor:
    """The index of each row's largest logit, the first where several tie (as `argmax`). `max(dim).indices`, not
    `argmax`: on a 2-core Xeon, 8 x 50,257 logits took 94 us against argmax's 296 (1 row: 26 against 76), a cost
    paid every decode step; both return the first maximal index."""
    return logits.max(dim=-1).indices


def sample_next(
    logits: Tensor,
    params: SamplingParams,
    context=None,
    generators: list[torch.Generator] | None = None,
) -> Tensor:
    """Choose one token per row; returns a ``(B,)`` long tensor.

    Greedy (``temperature == 0``, and also ``top_k == 1``, which must be identical to greedy even on tied
    logits) is the argmax of the penalised logits. Otherwise a draw from ``softmax(process_logits(...))``.

    With ``generators`` (one per row, see :func:`make_generators`) row ``i`` draws from ``generators[i]``
    alone, so a request gets the same tokens whether it is batched with others or run by itself. Without
    them the global RNG is used for the whole batch in one call.
    """
    x = process_logits(logits, params, context)
    if params.temperature == 0 or params.top_k == 1:
        return greedy_pick(x)
    probs = torch.softmax(x, dim=-1)
    if generators is not None and len(generators) != probs.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {probs.shape[0]} rows")
    return draw(probs, generators)


def draw(probs: Tensor, generators: list[torch.Generator] | None = None) -> Tensor:
    """One draw per row of ``(B, V)`` probabilities by the inverse CDF: a uniform ``u`` per row, and the first token
    whose cumulative probability (summed in float64) exceeds ``u`` times the row's total.

    Exact up to float64 rounding, and zero-probability tokens (filtered by top-k/top-p/min-p) are never drawn: their
    interval of the cumulative sum is empty. It replaces one ``torch.multinomial`` call per row: with per-row
    generators that was 0.2-0.4 ms a row on a 2-core AVX2 CPU (7.9 ms a step at batch 32 over a 4,096 vocabulary, 22 ms
    at batch 8 over gpt2's 50,257), against one batched cumulative sum and search (1.6 and 2.1 ms). An exponential
    race (``argmax(p / E)``, as vLLM samples on GPUs) was tried first: exact too, but it needs a uniform per token
    (6.3 ms at batch 8 x 50,257). Row ``i`` reads one number from ``generators[i]`` alone, so it draws the same token
    batched or alone. Raises RuntimeError, as multinomial did, on NaN or infinite probabilities (extreme settings
    such as a temperature of 1e-300), so a server fails that one request.
    """
    if not bool(torch.isfinite(probs).all()):
        raise RuntimeError("sampling probabilities contain NaN or inf (is the temperature too close to 0?)")
    cum = torch.cumsum(probs, dim=-1, dtype=torch.float64)
    total = cum[:, -1:]
    if generators is None:
        u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device)
    else:
        u = torch.stack([torch.rand(1, generator=g, dtype=torch.float64, device=probs.device) for g in generators])
    # Below the total even after rounding, so the search never runs past the last token of nonzero probability.
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cum, target, right=True).squeeze(-1)


def make_generators(seed: int | None, n: int, device="cpu") -> list[torch.Generator] | None:
    """One generator per row, row ``i`` seeded with ``seed + i``; ``None`` (use the global RNG) when ``seed``
    is ``None``."""
    if seed is None:
        return None
    gens = []
    for i in range(n):
        g = torch.Generator(device=device)
        g.manual_seed((seed + i) & 0xFFFF_FFFF_FFFF_FFFF)
        gens.append(g)
    return gens


def top_logprobs(logits: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` most likely tokens per row with their log-probabilities, sorted descending.

    Taken from the *raw* logits, i.e. the model's own distribution, not the one reshaped by temperature and
    filters: that is what OpenAI and vLLM report, and filtered logprobs would be ``-inf`` for most
    alternatives and change meaning with the sampling settings. ``n`` is capped at the vocabulary size.
    Returns ``(values (B, n) float32, ids (B, n) long)``.
    """
    _check_2d(logits)
    if n < 0:
        raise ValueError(f"logprobs must be >= 0, got {n}")
    lp = torch.log_softmax(logits.to(torch.float32), dim=-1)
    values, ids = torch.topk(lp, min(n, lp.shape[-1]), dim=-1, largest=True, sorted=True)
    return values, ids
