"""Log-likelihoods of continuations given contexts, each distinct context encoded once.

A multiple-choice question asks for log P(choice | context) for 2-5 choices of a few tokens after a context of tens
to hundreds: the harness runs context + choice through the model once per choice. Here the contexts of a batch of
questions go through the model once (left-padded, so every row's last logits are its context's last token), then
the leading tokens all of a context's continuations share (scored once), the KV cache is copied once per
continuation row, and only each continuation's own tokens run again. Batches are filled up to a
token budget across questions, so a core is never running a batch of one.

Truncation follows the harness: a context + continuation longer than block_size + 1 keeps its last block_size + 1
tokens (the context loses its beginning), and a warning says how many pairs were cut.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from kiln.model.gpt import GPT
from kiln.model.kv_cache import KVCache
from kiln.utils.progress import LINE_INTERVAL_S, is_terminal


@dataclass(frozen=True)
class Scored:
    """log P(continuation | context), and whether every continuation token was the most likely one."""

    loglik: float
    greedy: bool


def truncate(ctx: list[int], cont: list[int], block_size: int) -> tuple[list[int], list[int], bool]:
    """The harness's left truncation: keep the last block_size + 1 tokens of context + continuation. A continuation
    longer than block_size keeps one token of context and only its own last block_size tokens are scored (the
    harness mis-slices this case; it does not arise for models with a context of 512 or more on these tasks)."""
    if len(ctx) + len(cont) <= block_size + 1:
        return ctx, cont, False
    if len(cont) > block_size:
        whole = ctx + cont
        return whole[-(block_size + 1) : -block_size], cont[-block_size:], True
    return ctx[len(ctx) + len(cont) - block_size - 1 :], cont, True


def _rows_of(cache: KVCache, rows: Tensor) -> KVCache:
    """A new cache whose row i is a copy of `cache` row rows[i]: each continuation starts from its context."""
    out = object.__new__(KVCache)
    out.k, out.v = cache.k.index_select(1, rows), cache.v.index_select(1, rows)
    out.pos, out.valid, out.n_valid = cache.pos[rows], cache.valid[rows], cache.n_valid[rows]
    out.max_len, out.length, out.padded = cache.max_len, cache.length, cache.padded
    return out


class Progress:
    """done/total, items/s and ETA on stderr (items = questions, not model calls): one updating line on a terminal,
    else a whole line at most every `LINE_INTERVAL_S` seconds and at the end (kiln.utils.progress's rule)."""

    def __init__(self, label: str, total: int, items_per_unit: float, enabled: bool) -> None:
        self.label, self.total, self.scale, self.enabled = label, total, items_per_unit, enabled
        self.start = self.last = time.perf_counter()
        self.done = 0
        self.terminal = is_terminal(sys.stderr)

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        every = 0.5 if self.terminal else LINE_INTERVAL_S
        if self.enabled and (now - self.last > every or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else math.inf
            items = self.done * self.scale
            line = (
                f"{self.label}: {items:,.0f}/{self.total * self.scale:,.0f} items  {rate * self.scale:,.1f} items/s"
                f"  ETA {eta:,.0f}s"
            )
            if self.terminal:
                print(f"\r{line} ", end="\n" if self.done >= self.total else "", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


@torch.no_grad()
def score_pairs(
    model: GPT,
    pairs: Sequence[tuple[list[int], list[int]]],
    *,
    batch_tokens: int = 4096,
    on_progress: Callable[[int], None] | None = None,
    what: str = "",
) -> list[Scored]:
    """log P(cont | ctx) for each (ctx tokens, cont tokens) pair; pairs with the same ctx share its encoding."""
    block = model.config.block_size
    device = model.lm_head.weight.device
    cut = 0
    groups: dict[tuple[int, ...], list[int]] = {}
    conts: list[list[int]] = []
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            raise ValueError(f"an empty continuation (pair {i}{' of ' + what if what else ''}): nothing to score")
        ctx, cont, was_cut = truncate(ctx, cont, block)
        cut += was_cut
        groups.setdefault(tuple(ctx), []).append(i)
        conts.append(cont)
    if cut:
        warnings.warn(
            f"{what or 'eval'}: {cut} of {len(pairs)} context+continuation pairs are longer than the model's "
            f"block_size + 1 = {block + 1} tokens; their contexts were truncated from the left",
            stacklevel=3,
        )
    # Longest contexts first (as the harness orders its requests): similar lengths share a batch, little padding.
    order = sorted(groups, key=lambda c: -len(c))
    shared = {c: shared_prefix([conts[i] for i in groups[c]]) for c in order}
    results: list[Scored | None] = [None] * len(pairs)
    start = 0
    while start < len(order):
        # Fill a batch of contexts up to the token budget (their continuations are then run in chunks of it).
        end, ctx_len, pre_len = start, 0, 0
        while end < len(order):
            c_len, p_len = max(ctx_len, len(order[end])), max(pre_len, shared[order[end]])
            if end > start and (end - start + 1) * (c_len + p_len) > batch_tokens:
                break
            end, ctx_len, pre_len = end + 1, c_len, p_len
        batch = order[start:end]
        scored = _score_batch(model, batch, groups, conts, [shared[c] for c in batch], device, batch_tokens)
        for i, s in zip([i for c in batch for i in groups[c]], scored, strict=True):
            results[i] = s
        if on_progress is not None:
            on_progress(sum(len(groups[c]) for c in batch))
        start = end
    return results  # type: ignore[return-value]


def _token_logprobs(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """log P(target) and whether it is the most likely token, per position (targets -1 = padding: 0 and True).

    log_softmax is one fused pass on CPU (logsumexp is several, ~1.5x slower at a 50k vocabulary) and `max` finds
    the top token ~2x faster than `argmax`; with the LM head these passes are most of the time of a batch. In
    float32 at least (bf16 log-probs would tie choices), float64 for a float64 model."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    real = targets >= 0
    safe = targets.clamp(min=0)
    picked = logp.gather(-1, safe[..., None])[..., 0]
    return picked * real, (logp.max(-1).indices == safe) | ~real


def shared_prefix(conts: list[list[int]]) -> int:
    """How many leading tokens all of a context's continuations share, leaving each at least its last token of
    its own (PIQA's two answers often differ only in their last words; a single continuation shares all but its
    last token). Those tokens are scored once, with the context, instead of once per continuation."""
    n = min(len(c) for c in conts) - 1
    first = conts[0]
    for k in range(n):
        if any(c[k] != first[k] for c in conts):
            return k
    return n


def _score_batch(
    model: GPT,
    contexts: list[tuple[int, ...]],
    groups: dict[tuple[int, ...], list[int]],
    conts: list[list[int]],
    shared: list[int],
    device: torch.device,
    batch_tokens: int,
) -> list[Scored]:
    g = len(contexts)
    c_len = max(len(c) for c in contexts)
    p_len = max(shared)
    members = [i for c in contexts for i in groups[c]]
    owner = torch.tensor([j for j, c in enumerate(contexts) for _ in groups[c]], device=device)
    t_len = max(len(conts[i]) for i in members)

    # 1. Contexts, left-padded: the last column is every row's last real token.
    idx = torch.zeros(g, c_len, dtype=torch.long)
    valid = torch.zeros(g, c_len, dtype=torch.bool)
    for j, c in enumerate(contexts):
        idx[j, c_len - len(c) :] = torch.tensor(c)
        valid[j, c_len - len(c) :] = True
    cache = model.new_cache(g, c_len + p_len + t_len)
    last, _ = model(idx.to(device), cache=cache, valid=valid.to(device))
    # base[j]: the logits that predict the first token after what has run so far for group j.
    base = last[:, -1]
    group_ll = torch.zeros(g, dtype=torch.float64, device=device)
    group_top = torch.ones(g, dtype=torch.bool, device=device)

    # 2. Each group's shared continuation prefix, right-padded (padding invalid), scored once per group. The LM
    # head runs only where an output is needed (`logits_at`: real prefix tokens), never on padding: at a 50k
    # vocabulary it is most of the cost of a token, and a batch's prefixes differ widely in length.
    if p_len:
        pre = torch.full((g, p_len), -1, dtype=torch.long)
        for j, c in enumerate(contexts):
            pre[j, : shared[j]] = torch.tensor(conts[groups[c][0]][: shared[j]])
        pre = pre.to(device)
        real = pre >= 0
        logits, _ = model(pre.clamp(min=0), cache=cache, valid=real, logits_at=real)
        # Prefix token 0 comes from the context's last logits; the output at prefix position k predicts token
        # k + 1 (none after a row's last real token: target -1, scored as nothing).
        lp0, top0 = _token_logprobs(base, pre[:, 0])
        nxt = torch.cat([pre[:, 1:], torch.full((g, 1), -1, dtype=torch.long, device=device)], 1)
        lp, top = _token_logprobs(logits, nxt[real])
        row = torch.arange(g, device=device)[:, None].expand(g, p_len)[real]
        group_ll += lp0.double() + torch.zeros(g, dtype=torch.float64, device=device).index_add_(0, row, lp.double())
        misses = torch.zeros(g, dtype=torch.long, device=device).index_add_(0, row, (~top).long())
        group_top &= top0 & (misses == 0)
        counts = real.sum(1)
        has = counts > 0
        at = (counts.cumsum(0) - 1).clamp(min=0)  # each row's last real prefix token, in logits' row order
        base = torch.where(has[:, None], logits[at], base)

    # 3. The first own token of each continuation, from its group's base logits.
    skip = [shared[int(j)] for j in owner.tolist()]
    own = torch.tensor([conts[i][k] for i, k in zip(members, skip, strict=True)], device=device)
    lls, greedy = _token_logprobs(base[owner], own)
    lls, greedy = lls.double() + group_ll[owner], greedy & group_top[owner]
    # 4. The rest, longest first in chunks of similar length (padding costs a full LM-head row per token), each row
    # from a copy of its group's cache. A continuation's last token is fed to nothing (nothing follows it).
    rest = [conts[i][k:] for i, k in zip(members, skip, strict=True)]
    by_len = sorted(range(len(members)), key=lambda r: -len(rest[r]))
    budget = max(1, batch_tokens)
    at_row = 0
    while at_row < len(by_len) and len(rest[by_len[at_row]]) > 1:
        width = len(rest[by_len[at_row]]) - 1
        # A chunk ends at the token budget, or where rows get shorter than half the widest: the body still runs
        # on padding, so a chunk is never more than half padding (ARC's answers range from one word to a sentence).
        chunk = [by_len[at_row]]
        for r in by_len[at_row + 1 :]:
            if len(rest[r]) <= 1 or (len(chunk) + 1) * width > budget or 2 * (len(rest[r]) - 1) < width:
                break
            chunk.append(r)
        at_row += len(chunk)
        tgt = torch.full((len(chunk), width + 1), -1, dtype=torch.long)
        for k, r in enumerate(chunk):
            tgt[k, : len(rest[r])] = torch.tensor(rest[r])
        tgt = tgt.to(device)
        # Padding is marked invalid, so no real token attends to it (causality already keeps it after them), and
        # the LM head runs only on inputs that predict a real token (input j is needed only if token j + 1 is).
        ok = tgt[:, 1:] >= 0
        rows = torch.tensor(chunk, device=device)
        cache_rows = _rows_of(cache, owner[rows])
        logits, _ = model(tgt[:, :-1].clamp(min=0), cache=cache_rows, valid=ok, logits_at=ok)
        lp, top = _token_logprobs(logits, tgt[:, 1:][ok])
        row = torch.arange(len(chunk), device=device)[:, None].expand_as(ok)[ok]
        lls[rows] += torch.zeros(len(chunk), dtype=torch.float64, device=device).index_add_(0, row, lp.double())
        misses = torch.zeros(len(chunk), dtype=torch.long, device=device).index_add_(0, row, (~top).long())
        greedy[rows] &= misses == 0
    return [Scored(ll, bool(gr)) for ll, gr in zip(lls.tolist(), greedy.tolist(), strict=True)]
