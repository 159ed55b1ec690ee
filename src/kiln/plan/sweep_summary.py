"""`SweepSummary`: the runs of an IsoFLOP sweep and the laws fitted to them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kiln.stage import Summary


def _ci(pair: list[float] | None) -> str:
    if not pair or any(math.isnan(x) for x in pair):
        return ""
    return f" [{pair[0]:.3g}, {pair[1]:.3g}]"


@dataclass
class SweepSummary(Summary):
    """Finished runs, approach 2 and 3 fits (with 95% bootstrap intervals) and the figure's paths."""

    out_dir: str
    runs: list[dict]
    approach2: dict | None = None
    approach3: dict | None = None
    plots: list[str] = field(default_factory=list)
    """sweep.png and sweep.svg (for a page, e.g. the playground, and for print)."""
    notes: list[str] = field(default_factory=list)
    interrupted: int | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 128 + self.interrupted if self.interrupted else 0

    def render(self) -> str:
        out = [f"{len(self.runs)} runs in {self.out_dir}/runs ({self.seconds:.0f} s)"]
        out.append(f"  {'run':<14} {'params':>10} {'tokens':>10} {'val loss':>9}")
        for r in sorted(self.runs, key=lambda r: (r["budget"], r["params"])):
            out.append(f"  {r['name']:<14} {r['params']:>10,} {r['tokens']:>10,} {r['val_loss']:>9.4f}")
        if self.approach2:
            a = self.approach2
            out.append(f"approach 2: N_opt ∝ C^{a['a']:.3f}{_ci(a['a_ci'])} (95% bootstrap); optima: "
                       + ", ".join(f"{o['budget']:.0e} -> {o['params']:,.0f}" for o in a["optima"]))  # fmt: skip
        if self.approach3:
            f, ci = self.approach3, self.approach3["ci"]
            out.append(
                f"approach 3: L = {f['E']:.3f}{_ci(ci['E'])} + {f['A']:.4g}{_ci(ci['A'])}/N^{f['alpha']:.3f}"
                f"{_ci(ci['alpha'])} + {f['B']:.4g}{_ci(ci['B'])}/D^{f['beta']:.3f}{_ci(ci['beta'])}"
            )
            out.append(f"            N_opt ∝ C^{f['a']:.3f}{_ci(ci['a'])}")
        out += [f"note: {n}" for n in self.notes]
        if self.plots:
            out.append("plots: " + "  ".join(self.plots))
        out.append(f"fit: {self.out_dir}/fit.json")
        return "\n".join(out)
