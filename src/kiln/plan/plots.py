"""The sweep's figure: IsoFLOP curves with their parabolas (approach 2), and the optima against compute with
the fitted power law; approach 3's law drawn over the curves. PNG for a page, SVG for print."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiln.plan.extras import need
from kiln.plan.fit import Approach2, LawFit


def plot_sweep(runs: list[dict], fit2: Approach2 | None, law: LawFit | None, out_dir: Path) -> list[str]:
    matplotlib = need("matplotlib")
    matplotlib.use("Agg")  # no display: files only
    plt = need("matplotlib.pyplot")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    budgets = sorted({r["budget"] for r in runs})
    colours = plt.cm.viridis(np.linspace(0, 0.85, max(1, len(budgets))))
    for budget, colour in zip(budgets, colours, strict=True):
        pts = sorted((r["params"], r["val_loss"], r["tokens"]) for r in runs if r["budget"] == budget)
        n = np.array([p[0] for p in pts])
        left.scatter(n, [p[1] for p in pts], color=colour, label=f"C = {budget:.0e}", zorder=3)
        xs = np.linspace(np.log(n.min()), np.log(n.max()), 100)
        if fit2 is not None and budget in fit2.parabolas:
            c2, c1, c0 = fit2.parabolas[budget]
            left.plot(np.exp(xs), c2 * xs**2 + c1 * xs + c0, color=colour)
            left.axvline(fit2.optima[budget], color=colour, ls=":", lw=1)
        if law is not None:
            nn = np.exp(xs)
            left.plot(nn, law.loss(nn, budget / (6 * nn)), color=colour, ls="--", lw=1)
    left.set_xscale("log")
    left.set_xlabel("parameters N")
    left.set_ylabel("validation loss (nats/token)")
    left.set_title("IsoFLOP curves (— parabola, - - approach 3 law)")
    left.legend(fontsize=8)

    if fit2 is not None:
        c = np.array(sorted(fit2.optima))
        right.scatter(c, [fit2.optima[b] for b in c], color="k", zorder=3, label="parabola vertices")
        cc = np.logspace(np.log10(c.min()) - 0.3, np.log10(c.max()) + 0.3, 50)
        right.plot(cc, fit2.k * cc**fit2.a, color="k", label=f"approach 2: N_opt ∝ C^{fit2.a:.2f}")
    if law is not None:
        cc = np.logspace(np.log10(min(budgets)) - 0.3, np.log10(max(budgets)) + 0.3, 50)
        from kiln.plan.laws import LossLaw

        fitted = LossLaw("fit", law.E, law.A, law.B, law.alpha, law.beta, "")
        right.plot(cc, [fitted.optimal(x)[0] for x in cc], "--", color="tab:red",
                   label=f"approach 3: N_opt ∝ C^{law.a:.2f}")  # fmt: skip
    right.set_xscale("log")
    right.set_yscale("log")
    for axis in (right.xaxis, right.yaxis):  # decade labels only: minor ones overlap over a short range
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_xlabel("compute C (FLOPs)")
    right.set_ylabel("compute-optimal N")
    right.set_title("optimal size against compute")
    right.legend(fontsize=8)
    fig.tight_layout()
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"sweep.{ext}"
        fig.savefig(path, dpi=120)
        paths.append(str(path))
    plt.close(fig)
    return paths
