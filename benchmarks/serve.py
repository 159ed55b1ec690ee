"""Serving throughput: aggregate tokens/s and time to first token at 1, 8 and 32 concurrent streams.

Starts a real `kiln serve` (a subprocess on 127.0.0.1) over a gpt2-shaped model (124M, random weights,
GPT-2's vocabulary from tests/fixtures) and drives it with concurrent streaming /v1/completions requests
(httpx, asyncio; best of --rounds runs per level): every request a 37-token prompt, 64 new tokens, greedy,
ignore_eos. The same load also runs against the same server with --max-batch 1 — one sequence at a time,
the "one global lock" server that continuous batching replaces — so the gain is measured, not assumed.

    python benchmarks/serve.py [--streams 1 8 32] [--new-tokens 64] [--preset gpt2]

Aim (issue 7): >= 4x aggregate tokens/s at 8 streams over 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from kiln.model import build
from kiln.model.checkpoint import save_checkpoint
from kiln.tokenizer import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
GPT2 = ROOT / "tests" / "fixtures" / "tokenizers" / "gpt2"
PROMPT = (
    "The history of the printing press begins in the fifteenth century, when a goldsmith in Mainz combined "
    "movable metal type, oil-based ink and a wooden press adapted from those used for wine."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: Path, max_batch: int, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "kiln", "serve", "--models", str(models), "--port", str(port), *extra]
    proc = subprocess.Popen(
        [*cmd, "--max-batch", str(max_batch)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


async def one_stream(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float, int, float]:
    """(time to first token, tokens, total time) of one streaming request."""
    t0 = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if '"choices": []' in line:  # the usage chunk
                continue
            if first is None:
                first = time.perf_counter() - t0
                assert json.loads(line[6:])["choices"][0]["token_ids"]
            tokens += 1  # one chunk per token (parsing every chunk would load the shared CPUs, not the server)
    return first or 0.0, tokens, time.perf_counter() - t0


async def load(url: str, streams: int, new_tokens: int) -> dict:
    body = {
        "model": "bench",
        "prompt": PROMPT,
        "max_tokens": new_tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
        "return_token_ids": True,
    }
    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await one_stream(client, url, {**body, "max_tokens": 4})  # load the model, warm the kernels
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, url, body) for _ in range(streams)))
        wall = time.perf_counter() - t0
    ttfts = sorted(r[0] for r in results)
    total = sum(r[1] for r in results)
    return {
        "streams": streams,
        "tokens": total,
        "wall": wall,
        "tok_s": total / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--max-batch", type=int, default=32, help="the batching server's rows (64 for 64 streams)")
    ap.add_argument("--device", default="cpu", help="where the server runs the model (cpu, cuda)")
    ap.add_argument("--dtype", default="float32", help="the server's decode precision (float32, bfloat16, auto)")
    ap.add_argument("--skip-serial", action="store_true", help="skip the --max-batch 1 comparison")
    ap.add_argument("--rounds", type=int, default=3, help="best of this many runs per level (noise only slows)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        torch.manual_seed(0)
        model = build(args.preset)
        tokenizer = get_tokenizer(GPT2) if model.config.vocab_size >= 50257 else None
        save_checkpoint(models / "bench", model, tokenizer)
        del model
        print(f"kiln serve benchmark: {args.preset} (random weights), {args.new_tokens} new tokens per request")
        machine = platform.processor() or platform.machine()
        print(f"machine: {machine}, {os.cpu_count()} CPUs, torch {torch.__version__}")
        rows: dict[str, list[dict]] = {}
        for label, max_batch in [("continuous batching", args.max_batch), ("one at a time (--max-batch 1)", 1)]:
            if args.skip_serial and max_batch == 1:
                continue
            proc, url = start_server(models, max_batch, (f"device={args.device}", f"dtype={args.dtype}"))
            try:
                rows[label] = []
                for s in args.streams:
                    rounds = args.rounds if max_batch > 1 or s == 1 else 1  # the serial server is slow and stable
                    runs = [asyncio.run(load(url, s, args.new_tokens)) for _ in range(rounds)]
                    rows[label].append(max(runs, key=lambda r: r["tok_s"]))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        head = f"{'streams':>7} {'tokens':>7} {'wall s':>7} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9}"
        print(f"\n{'server':<32} {head}")
        for label, results in rows.items():
            for r in results:
                print(
                    f"{label:<32} {r['streams']:>7} {r['tokens']:>7} {r['wall']:>7.2f} {r['tok_s']:>8.1f} "
                    f"{r['ttft_p50']:>8.3f}s {r['ttft_p95']:>8.3f}s"
                )
        batched = {r["streams"]: r for r in rows.get("continuous batching", [])}
        if 1 in batched:
            for s in args.streams:
                if s != 1:
                    print(f"aggregate tokens/s at {s} streams over 1: {batched[s]['tok_s'] / batched[1]['tok_s']:.2f}x")


if __name__ == "__main__":
    main()
