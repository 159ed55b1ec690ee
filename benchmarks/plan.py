"""`kiln plan`'s counting against kiln model's full meta-device build, for every preset.

    python benchmarks/plan.py [--rounds 5]

The anchor is what `kiln model` does: build the whole model on the meta device and call num_params /
flops_per_token. kiln.plan's `ModelCounts.of` builds one- and two-layer versions and extrapolates (every block
is identical). Both sides run in this process after one warm-up build (the first meta build of a process pays
PyTorch's lazy import of its meta decompositions, ~1 s, whichever side goes first); each figure is the best of
`--rounds`. The counts are checked equal; the ratio and the time of a whole `kiln plan` (every law, the
96-entry memory table, steps, cost) are printed.
"""

from __future__ import annotations

import argparse
import time

from kiln.model.presets import PRESETS, build, preset
from kiln.plan.config import PlanConfig
from kiln.plan.memory import ModelCounts
from kiln.plan.run import run


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    build("tiny", device="meta")  # the one-off import, outside every clock
    print(f"{'preset':<12} {'params':>16} {'full build ms':>14} {'kiln.plan ms':>13} {'ratio':>6} {'kiln plan ms':>13}")
    for name in PRESETS:
        cfg = preset(name)

        def full(name=name) -> tuple[int, int, int]:
            m = build(name, device="meta")
            return m.num_params(), m.num_params(non_embedding=True), m.flops_per_token()

        def counts(cfg=cfg) -> tuple[int, int, int]:
            c = ModelCounts.of(cfg)
            return c.params, c.non_embedding, c.flops_per_token

        assert full() == counts(), name
        t_full, t_counts = best(full, args.rounds), best(counts, args.rounds)
        t_plan = best(lambda name=name: run(PlanConfig(preset=name, tokens=1e12)), args.rounds)
        print(f"{name:<12} {full()[0]:>16,} {t_full * 1e3:>14.1f} {t_counts * 1e3:>13.1f} "
              f"{t_full / t_counts:>5.1f}x {t_plan * 1e3:>13.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
