"""Run every CPU benchmark, one after another, and write what each printed to one Markdown file.

Each script already measures kiln and its anchor side by side in one run and checks their outputs equal; this
runs them all on one machine in one sitting, so every figure in docs/benchmarks.md can be regenerated with one
command and compared with the machine named at the top of the file. A benchmark whose anchor or data is missing
here (datatrove's virtualenv, llama.cpp, ../shared/data) is listed as "not run" with the reason, never guessed.

    pip install -e .[bench]
    python benchmarks/run_all.py [--quick] [--only generate serve ...] [--out docs/benchmarks-latest.md]

--quick uses fewer rounds and smaller inputs (a few minutes in all, for checking the scripts still run); the
default uses each script's own defaults (about an hour on 2 cores). GPU benchmarks are in benchmarks/gpu.sh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DT_PYTHON = Path("/tmp/dtvenv/bin/python")


@dataclass
class Bench:
    name: str
    args: list[str]
    quick: list[str]
    needs: tuple[str, ...] = ()  # importable modules the anchor needs
    needs_path: Path | None = None  # a file or folder that must exist
    timeout_s: int = 3600


BENCHES = [
    Bench(
        "generate", ["--skip-no-cache"], ["--skip-no-cache", "--repeats", "1", "--new-tokens", "16"], ("transformers",)
    ),
    Bench(
        "serve", ["--streams", "1", "8", "--rounds", "2"], ["--streams", "1", "4", "--rounds", "1", "--preset", "tiny"]
    ),
    Bench("tokenizer", [], ["--rounds", "1", "--vocab", "4096"], ("tiktoken",), SHARED),
    Bench("minhash", [], ["--docs", "300", "--rounds", "1"], ("datasketch",)),
    Bench("ingest", [], ["--rounds", "1", "--repeat", "2"], ("warcio",)),
    Bench("extract", [], ["--rounds", "1", "--docs-pages", "5"], ("trafilatura",), SHARED / "web"),
    Bench("clean", [], ["--rounds", "1", "--repeat", "1"], (), DT_PYTHON),
    Bench("crawl", [], ["--rounds", "1"], ("scrapy",)),
    # benchmarks/gguf_llamacpp.py needs a llama.cpp checkout (--llama-cpp DIR): run it by hand.
    Bench("eval", [], ["--items", "10", "--tasks", "arc_easy,piqa"], ("lm_eval",)),
    Bench("sft", [], ["--steps", "6", "--conversations", "64"], ("trl",)),
    Bench("dpo", [], ["--steps", "6", "--pairs", "48"], ("trl",)),
    Bench("grpo", ["--rounds", "3"], ["--steps", "4", "--new-tokens", "16"], ("trl",)),
    Bench("shared_prompt", [], ["--batches", "3", "--rounds", "1"]),
    Bench("plan", [], ["--rounds", "1"], ("scipy",)),
    Bench("optimizer_states", [], ["--rounds", "1"]),
    Bench("bf16_row_buckets", [], ["--steps", "30"]),
    Bench("bf16_width_buckets", [], ["--steps", "10", "--prompts", "10"]),
    # Both parts: the 140-second recipe's val loss and the throughput against the plain loop (issue 21 asks for both
    # on each CPU kind).
    Bench("train_shakespeare", [], ["--part", "throughput", "--steps", "40", "--rounds", "1"]),
]


def missing(bench: Bench) -> str | None:
    """Why `bench` cannot run here, or None."""
    absent = [m for m in bench.needs if importlib.util.find_spec(m) is None]
    if absent:
        return f"needs {', '.join(absent)} (pip install -e .[bench])"
    if bench.needs_path is not None and not bench.needs_path.exists():
        how = " (benchmarks/clean.py says how to make it)" if bench.name == "clean" else ""
        return f"needs {bench.needs_path}{how}"
    return None


def machine() -> str:
    """The CPU model, cores and library versions, for the top of the report."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (
        f"{model} ({cpu_features()}), {os.cpu_count()} cores, Python {platform.python_version()}, torch"
        f" {torch.__version__}"
    )


def cpu_features() -> str:
    """The vector and matrix units that decide kiln's CPU paths (asked the way kiln's own choices ask): one CPU model
    name ("AMD EPYC") covers machines with and without AVX-512 and bf16, so the report names them."""
    import torch

    from kiln.model.gemv import cpu_bf16
    from kiln.train.precision import cpu_has_amx

    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"capability {capability}"
    has = {"AVX-512": capability == "AVX512", "AVX512-BF16": cpu_bf16(), "AMX": cpu_has_amx()}
    return "AVX2" + "".join(f", {'' if on else 'no '}{name}" for name, on in has.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller inputs")
    ap.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run just these")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-latest.md")
    args = ap.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    flags = (" --quick" if args.quick else "") + (f" --only {' '.join(args.only)}" if args.only else "")
    lines = [
        "# Benchmarks: the latest run" + (" (a subset)" if args.only else " of all of them"),
        "",
        f"Written by `python benchmarks/run_all.py{flags}` on {started}.",
        f"Machine: {machine()}.",
        "Each section is what the script printed; docs/benchmarks.md explains the figures.",
        "",
    ]
    summary = []
    for bench in chosen:
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / f"{bench.name}.py"),
            *(bench.quick if args.quick else bench.args),
        ]
        shown = "python " + " ".join(["benchmarks/" + bench.name + ".py", *cmd[2:]])
        lines += [f"## {bench.name}", "", f"`{shown}`", ""]
        why = missing(bench)
        if why:
            lines += [f"Not run: {why}.", ""]
            summary.append(f"{bench.name}: not run ({why})")
            print(f"--- {bench.name}: not run ({why})", flush=True)
            continue
        print(f"--- {bench.name}: {shown}", flush=True)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=bench.timeout_s, check=False
            )
            output, status = done.stdout.rstrip(), "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
            if done.returncode != 0:
                output += "\n" + done.stderr.rstrip()[-3000:]
        except subprocess.TimeoutExpired:
            output, status = "", f"FAILED (over {bench.timeout_s} s)"
        seconds = time.perf_counter() - t0
        print(output, flush=True)
        lines += ["```", output, "```", "", f"{status}, {seconds:.0f} s.", ""]
        summary.append(f"{bench.name}: {status} in {seconds:.0f} s")
    lines += ["## Summary", "", *[f"- {s}" for s in summary], ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".partial")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(args.out)
    print("\n".join(summary))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
