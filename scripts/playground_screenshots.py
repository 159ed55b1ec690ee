"""Screenshots of every tab of the playground, for docs/playground.md: `python scripts/playground_screenshots.py`.

It trains two tiny models on the bundled Tiny Shakespeare (about half a minute on a CPU; or give checkpoints
with --models), serves them with `kiln serve` on a free 127.0.0.1 port, opens the page in Debian's chromium
(Playwright) and writes docs/images/playground-<tab>.png for every tab the page has ([role=tab], so tabs added
later are covered), each tab first put to work (a seeded generation, the explainer's bars, two tokenizers,
a comparison, two arena votes, the runs' curves, the funnel of a real `kiln clean` of two bundled WARCs),
plus the Generate tab on a phone-sized screen.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from kiln.cli import main as kiln

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "src" / "kiln" / "assets" / "tinyshakespeare.txt"
VOCABS = ROOT / "tests" / "fixtures" / "tokenizers"  # gpt2 / cl100k_base files for the tokenizer tab, if present
# a desktop layout (1250 CSS pixels: three columns) drawn at 0.8 device pixels per CSS pixel: 1000-pixel-wide PNGs
WIDTH, HEIGHT, SCALE = 1250, 900, 0.8


def run(argv: list[str]) -> None:
    if kiln(argv) != 0:
        raise SystemExit(f"kiln {' '.join(argv)} failed")


def train_models(root: Path) -> Path:
    """A 2-layer BPE model with chat tokens (`shakespeare-bpe`) and a 1-layer char-level one (`shakespeare-char`)."""
    models, tok, shards = root / "models", root / "tok", root / "shards"
    run(["tokenizer", "train", str(SHAKESPEARE), "--vocab-size", "400", "--chat-tokens", "--out", str(tok), "--quiet"])
    run(["tokenize", str(SHAKESPEARE), "--tokenizer", str(tok), "--out", str(shards), "--quiet", "--workers", "1"])
    common = [
        "preset=tiny",
        "eval_batches=1",
        "sample_tokens=0",
        "device=cpu",
        "warmup_steps=10",
        "log_interval=5",
        "eval_interval=30",
    ]
    bpe = ["model.n_layer=2", "model.n_embd=64", "model.n_head=4", "model.block_size=128", "batch_size=16"]
    run(["train", f"data={shards}", *common, *bpe, "max_steps=150", "lr=3e-3", f"out_dir={models / 'shakespeare-bpe'}"])
    char = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=64", "batch_size=8"]
    run(["train", *common, *char, "max_steps=60", f"out_dir={models / 'shakespeare-char'}"])
    print("trained the models to screenshot; serving them")
    return models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_sample(root: Path) -> Path:
    """A real `kiln clean` of two bundled WARC samples, for the Data tab."""
    warcs = ROOT / "src" / "kiln" / "assets" / "quickstart" / "warc"
    inputs = [str(warcs / "wget-sample-0000.warc.gz"), str(warcs / "whirlwind.warc.gz")]
    run(["clean", *inputs, "--out", str(root / "web")])
    return root


def start_server(models: Path, port: int, data_dir: Path | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kiln", "serve", f"models={models}", f"port={port}"]
    if data_dir is not None:
        argv.append(f"data_dir={data_dir}")
    if VOCABS.is_dir():
        argv.append(f"vocab_dir={VOCABS}")
    server = subprocess.Popen(argv)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("kiln serve did not start")


def idle(page: Page) -> None:
    page.wait_for_selector("#gen-status[data-state=idle]")


def prepare(page: Page, tab: str) -> None:
    """Put a tab to work so its screenshot shows what it does (a tab this script does not know is shown as it opens)."""
    if tab == "generate":
        page.fill("#prompt", "ROMEO:")
        for field, value in (("temperature", "0.8"), ("top-k", "40"), ("max-tokens", "60"), ("seed", "7")):
            page.fill(f"#{field}", value)
        page.click("#generate")
        idle(page)
        page.click("#view-code")
        page.click("[data-testid=code-lang-python]")
    elif tab == "explain":
        page.fill("#ex-prompt", "ROMEO:")
        page.fill("#ex-top-p", "0.9")
        page.wait_for_selector("[data-testid=ex-bar]")
    elif tab == "tokenize":
        page.wait_for_selector("[data-testid=tok-col]")
    elif tab == "compare":
        page.fill("#cmp-prompt", "KING:")
        page.click("#cmp-run")
        page.wait_for_selector("#cmp-run:enabled")
    elif tab == "arena":
        page.fill("[data-testid=arena-prompt]", "ROMEO:")
        page.fill("[data-testid=arena-seed]", "3")
        for winner in ("a", "tie"):
            page.click("[data-testid=arena-run]")
            page.wait_for_selector("[data-testid=arena-vote-a]:enabled")
            page.click(f"[data-testid=arena-vote-{winner}]")
        page.wait_for_selector("#arena-board-rows tr")
    elif tab == "dashboard":
        page.wait_for_selector("#dash-charts svg")
    elif tab == "data":
        page.wait_for_selector("[data-testid=data-funnel] tbody tr")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)


def shoot(base: str, out: Path, chromium: str) -> list[Path]:
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        context = browser.new_context(
            base_url=base, viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=SCALE, color_scheme="light"
        )
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector("body[data-ready=true]")
        tabs = page.locator("[role=tab]")
        for name in [tabs.nth(i).get_attribute("data-tab") for i in range(tabs.count())]:
            page.click(f"[role=tab][data-tab='{name}']")
            prepare(page, name)
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")
            written.append(out / f"playground-{name}.png")
            page.screenshot(path=str(written[-1]))
        context.close()
        phone = browser.new_context(base_url=base, viewport={"width": 390, "height": 844}, is_mobile=True)
        page = phone.new_page()
        page.goto("/")
        page.wait_for_selector("body[data-ready=true]")
        written.append(out / "playground-phone.png")
        page.screenshot(path=str(written[-1]))
        browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="checkpoints to serve (default: train two tiny ones)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiln-shots-") as tmp:
        models = args.models or train_models(Path(tmp))
        data_dir = clean_sample(Path(tmp) / "clean")
        port = free_port()
        server = start_server(models, port, data_dir)
        try:
            for path in shoot(f"http://127.0.0.1:{port}", args.out, chromium):
                print(f"{path}  {path.stat().st_size // 1024} KB")
        finally:
            server.terminate()
            server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
