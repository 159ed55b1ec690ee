"""`CleanConfig`: everything one `kiln clean` run needs, as one typed object that a TOML file can hold.

A config file has top-level keys and the pipeline as `[[steps]]` tables, and loads with the generic loader,
`kiln.config.load_config(CleanConfig, path, overrides)`:

    inputs = ["crawl", "ingest"]
    out_dir = "clean"

    [[steps]]
    name = "extract"
    engine = "trafilatura"

    [[steps]]
    name = "langid"
    languages = ["en", "fr"]

Step names are checked here against the registry; step options are checked when `run` builds the steps, before
it reads any input (a step's options are its class's constructor arguments, so only the class can say).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kiln.clean import registry
from kiln.utils.checks import require

EXECUTORS = ("local", "ray")
MAX_WORKERS = 1024  # processes (or Ray CPUs) for phase 1: past this, a typo, not a machine
# What ray.init(address=...) accepts: "auto" (RAY_ADDRESS or the cluster running on this node), a head's GCS
# "host:port" (usually 6379) or a Ray Client "ray://host:port" (usually 10001). Checked up front because a
# dashboard URL ("http://head:8265", the Jobs API address) is the usual mistake and Ray's own error is obscure.
_RAY_ADDRESS = re.compile(r"auto|(ray://)?([\w.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}")


def _default_steps() -> list[dict[str, Any]]:
    return [{"name": n} for n in registry.DEFAULT_STEPS]


@dataclass
class CleanConfig:
    """A `kiln clean` run: which files, where the output goes, the pipeline, and where phase 1 runs."""

    inputs: list[str] = field(default_factory=list)
    """WARC/ARC (.warc, .warc.gz, .arc, .arc.gz), JSONL (.jsonl, .jsonl.gz) or Parquet files (a `text` column
    of strings), or directories searched for them; each file is one shard."""
    out_dir: str = "clean"
    """Output directory: one Parquet shard per input file, stats.json, dropped_samples.json and the resolved
    config; a rerun into it resumes (shards whose input and steps are unchanged are skipped, others redone,
    shards of inputs not in this run removed)."""
    workers: int = 0
    """Processes for the per-shard steps (0 = one per CPU, at most 1024); with executor "ray" and no
    ray_address, the CPUs of the Ray started here."""
    executor: Literal["local", "ray"] = "local"
    """Where the per-shard steps run: "local" processes, or "ray" tasks (needs kiln[ray]); the output is the
    same, so a run can be resumed with the other executor."""
    ray_address: str | None = None
    """The Ray cluster to use with executor "ray": auto, HOST:6379 (the head's GCS port) or ray://HOST:10001
    (Ray Client); unset: start a local Ray for this run and stop it at the end."""
    steps: list[dict[str, Any]] = field(default_factory=_default_steps)
    """The pipeline, in order: [[steps]] tables, each a step `name` and that step's options (a step left out is
    not run); default: FineWeb's order, url_filter extract langid gopher_repetition gopher_quality c4 fineweb
    exact_dedup minhash_dedup pii."""
    quiet: bool = False
    """No progress bar (the summary table is still printed)."""

    def validate(self) -> CleanConfig:
        require(bool(self.inputs), "inputs: give at least one input file or directory")
        require(0 <= self.workers <= MAX_WORKERS,
                f"workers must be between 0 (one per CPU) and {MAX_WORKERS}, got {self.workers}")  # fmt: skip
        require(self.executor in EXECUTORS, f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.ray_address is not None:
            require(self.executor == "ray", f"ray_address {self.ray_address!r} needs executor 'ray'")
            require(isinstance(self.ray_address, str) and _RAY_ADDRESS.fullmatch(self.ray_address) is not None,
                    f"ray_address must be 'auto', 'host:port' (a head node's GCS port, usually 6379) or "
                    f"'ray://host:port' (Ray Client, usually 10001), got {self.ray_address!r}")  # fmt: skip
        for i, spec in enumerate(self.steps):
            name = spec.get("name") if isinstance(spec, dict) else None
            require(isinstance(name, str) and name in registry.STEPS,  # looked up now: tests patch it
                    f"steps[{i}]: unknown step {spec!r}; known: {', '.join(registry.STEPS)}")  # fmt: skip
        return self
