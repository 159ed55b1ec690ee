"""Per-item decisions and per-task accuracies, computed as lm-evaluation-harness computes them.

- acc: the option with the highest summed log-likelihood;
- acc_norm: log-likelihood divided by the option's length in characters. The harness divides by the length of
  its `doc_to_choice` strings: the answer texts for multiple choice, but the *context options* for schema tasks
  (Winogrande), although the scored continuation is then the same for every option; kept, to match it;
- acc_bytes: the same with UTF-8 byte lengths;
- standard error of a mean of 0/1 scores: sample standard deviation (n - 1) over sqrt(n), as the harness reports;
- centred: (acc - random) / (1 - random), so guessing scores 0 and perfect 1 (the Eval Gauntlet's and CORE's
  rescaling), averaged over tasks into one number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kiln.eval.scoring import Scored
from kiln.eval.tasks import Item


def argmax(values: Sequence[float]) -> int:
    """First index of the largest value (numpy's rule, which the harness uses: ties go to the earlier option)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def decide(item: Item, scored: Sequence[Scored]) -> dict[str, object]:
    """One item's predictions and correctness under every metric."""
    lls = [s.loglik for s in scored]
    if item.kind == "lm":
        return {"loglik": lls[0], "greedy": scored[0].greedy, "acc": float(scored[0].greedy)}
    texts = item.contexts if item.kind == "schema" else item.choices
    pred = argmax(lls)
    pred_norm = argmax([ll / len(t) for ll, t in zip(lls, texts, strict=True)])
    pred_bytes = argmax([ll / len(t.encode("utf-8")) for ll, t in zip(lls, texts, strict=True)])
    return {
        "gold": item.gold,
        "loglik": lls,
        "pred": pred,
        "pred_norm": pred_norm,
        "pred_bytes": pred_bytes,
        "acc": float(pred == item.gold),
        "acc_norm": float(pred_norm == item.gold),
        "acc_bytes": float(pred_bytes == item.gold),
    }


def mean_stderr(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return mean, math.nan
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


def centred(acc: float, baseline: float) -> float:
    return (acc - baseline) / (1 - baseline)


def task_scores(kind: str, decisions: Sequence[dict[str, object]], baseline: float) -> dict[str, float]:
    """acc (+ stderr) for every metric of the task's kind; perplexity for language modelling."""
    out: dict[str, float] = {}
    names = ["acc"] if kind == "lm" else ["acc", "acc_norm", "acc_bytes"]
    for name in names:
        out[name], out[f"{name}_stderr"] = mean_stderr([float(d[name]) for d in decisions])  # type: ignore[arg-type]
    if kind == "lm":
        # The harness's LAMBADA perplexity: exp of minus the mean per-item log-likelihood of the last word.
        out["perplexity"] = math.exp(-sum(float(d["loglik"]) for d in decisions) / len(decisions))  # type: ignore[arg-type]
    out["random_baseline"] = baseline
    out["centred"] = centred(out["acc"], baseline)
    return out
