"""`CleanSummary`: what a `kiln clean` run did, per step; the terminal table, and stats.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiln.stage import Summary

STATS_FILE = "stats.json"


@dataclass
class CleanSummary(Summary):
    """The content of `<out_dir>/stats.json` (what `to_json` gives and `write` writes), plus where it is."""

    inputs: list[dict[str, Any]]
    """The input files, in shard order: each one's `path`, `documents` read from it and `problem` (None, or
    why it gave fewer documents than it holds or none: not what its name says, unparsable, malformed records
    skipped, empty)."""
    documents_out: int
    """Documents in the output shards."""
    steps: list[dict[str, Any]]
    """Per step, in pipeline order: name, in, kept, dropped, dropped_by_reason (most frequent first), seconds
    (phase-1 steps summed over shards)."""
    seconds: float
    """Wall time of the run."""
    out_dir: str
    """The output directory (not in stats.json, which lives in it)."""

    @classmethod
    def from_stats(cls, stats: dict[str, Any], out_dir: str) -> CleanSummary:
        """From the content of a stats.json."""
        return cls(stats["inputs"], stats["documents_out"], stats["steps"], stats["seconds"], out_dir)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_json().items() if k != "out_dir"}

    def render(self) -> str:
        lines = [f"{'step':<20} {'in':>9} {'kept':>9} {'dropped':>9} {'seconds':>8}  top reasons"]
        for s in self.steps:
            reasons = ", ".join(f"{r} {n}" for r, n in list(s["dropped_by_reason"].items())[:3])
            lines.append(
                f"{s['name']:<20} {s['in']:>9,} {s['kept']:>9,} {s['dropped']:>9,} {s['seconds']:>8.2f}  {reasons}"
            )
        troubled = [i for i in self.inputs if isinstance(i, dict) and i.get("problem")]
        if troubled:
            lines.append(f"{len(troubled)} of {len(self.inputs)} input files had a problem:")
            lines += [f"  {i['path']}: {i['documents']:,} documents; {i['problem']}" for i in troubled[:20]]
            if len(troubled) > 20:
                lines.append(f"  ... and {len(troubled) - 20} more (see stats.json)")
        lines.append(f"{self.documents_out:,} documents kept -> {self.out_dir} ({self.seconds:.1f} s)")
        return "\n".join(lines)
