"""`SweepConfig`: an IsoFLOP experiment — model sizes x compute budgets of small `kiln train` runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kiln.utils.checks import require


@dataclass
class SweepConfig:
    """An IsoFLOP sweep. The defaults (3 budgets x 5 depths, char-level Tiny Shakespeare) are sized to finish
    within 20 minutes on two CPU cores; every run is an ordinary kiln train run directory under out_dir/runs/."""

    out_dir: Path = Path("runs/sweep")
    """The sweep directory: runs/<budget>-d<depth>/ (kiln train runs), data/, fit.json, sweep.png/.svg."""
    data: str = "shakespeare"
    """A UTF-8 text file (char-level), "shakespeare" (bundled Tiny Shakespeare), or a kiln tokenize shard directory."""
    budgets: list[float] = field(default_factory=lambda: [3e10, 1e11, 3e11])
    """Training FLOPs of each run at a budget (kiln's exact count: 6N + attention, per token)."""
    depths: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Model sizes, as depths of the depth rule with this sweep's aspect_ratio and head_dim."""
    aspect_ratio: int = 16
    """Width per layer (width = aspect_ratio x depth); a quarter of nanochat's 64, so that the default sizes (6K
    to 450K parameters) bracket the compute-optimal size of CPU-sized budgets."""
    head_dim: int = 16
    """Attention head width of the sweep's models (a divisor of aspect_ratio, so every width is exact)."""
    block_size: int = 64
    """Context length of the sweep's models."""
    batch_size: int = 16
    """Sequences per step (batch_size x block_size tokens)."""
    lr: float = 3e-3
    """AdamW peak learning rate of every run (cosine schedule over the run's own length, as Hoffmann et al.)."""
    min_steps: int = 20
    """Runs with fewer steps than this at their budget are skipped (too short to mean anything)."""
    eval_batches: int = 8
    """Validation batches of the final loss of each run."""
    threads: int = 1
    """Torch threads per run (tiny models gain nothing from more; 1 keeps a shared machine responsive)."""
    seed: int = 1337
    """Seed of every run's initialisation and data order."""
    bootstrap: int = 200
    """Bootstrap resamples for the confidence intervals (0 = none)."""
    fit_only: bool = False
    """Fit and plot the finished runs without training any (e.g. while a sweep is still running elsewhere)."""

    def validate(self) -> SweepConfig:
        require(len(self.budgets) >= 1, "budgets must list at least one compute budget")
        require(all(b > 0 for b in self.budgets), f"budgets must all be > 0, got {self.budgets}")
        require(len(self.depths) >= 1, "depths must list at least one depth")
        require(all(1 <= d <= 64 for d in self.depths), f"depths must be between 1 and 64, got {self.depths}")
        for name in ("aspect_ratio", "head_dim", "block_size", "batch_size", "min_steps", "eval_batches", "threads"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.bootstrap >= 0, f"bootstrap must be >= 0, got {self.bootstrap}")
        return self
