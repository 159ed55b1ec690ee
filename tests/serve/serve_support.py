"""A real `kiln serve` for tests: two tiny models trained for real, and uvicorn on 127.0.0.1 in a thread.

`bpe-chat` is a 2-layer model on a 400-id BPE vocabulary with ChatML tokens (it can chat); `char` is a
1-layer char-level base model (it cannot). Both are trained on the bundled Tiny Shakespeare for a few
dozen steps: enough to be real checkpoints, written by `kiln train`, loaded the way users load them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from helpers import run_cli
from kiln.serve import ServeConfig, create_app
from kiln.serve.connections import uvicorn_options

SHAKESPEARE = Path(__file__).resolve().parents[2] / "src" / "kiln" / "assets" / "tinyshakespeare.txt"
VOCABS = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizers"


def _ok(argv: list[str]) -> None:
    rc, out, err = run_cli(argv)
    assert rc == 0, f"kiln {' '.join(argv)} failed:\n{out}\n{err}"


def build_models(root: Path) -> Path:
    """Train the two test models under root/models; return that directory."""
    models = root / "models"
    tok, shards = root / "tok", root / "shards"
    _ok(["tokenizer", "train", str(SHAKESPEARE), "--vocab-size", "400", "--chat-tokens", "--out", str(tok), "--quiet"])
    _ok(["tokenize", str(SHAKESPEARE), "--tokenizer", str(tok), "--out", str(shards), "--quiet", "--workers", "1"])
    common = ["preset=tiny", "eval_batches=1", "sample_tokens=0", "device=cpu", "warmup_steps=10", "log_interval=1000"]
    bpe = ["model.n_layer=2", "model.n_embd=64", "model.n_head=4", "model.block_size=128", "batch_size=16"]
    _ok(["train", f"data={shards}", *common, *bpe, "max_steps=80", "lr=3e-3", f"out_dir={models / 'bpe-chat'}"])
    char = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=64", "batch_size=8"]
    _ok(["train", *common, *char, "max_steps=40", f"out_dir={models / 'char'}"])
    return models


class RunningServer:
    def __init__(self, base_url: str, app) -> None:
        self.base_url = base_url  # e.g. http://127.0.0.1:40123
        self.app = app


@contextmanager
def run_server(models: Path, **options) -> Iterator[RunningServer]:
    """Serve `models` on a free 127.0.0.1 port for the duration of the block (ServeConfig options as keywords)."""
    options.setdefault("vocab_dir", VOCABS)
    config = ServeConfig(models=models, **options)
    app = create_app(config)
    with serve_app(app, config) as port:
        yield RunningServer(f"http://127.0.0.1:{port}", app)


@contextmanager
def serve_app(app, config: ServeConfig) -> Iterator[int]:
    """Any ASGI `app` behind uvicorn with the connection limits `kiln serve` runs with for `config`, on a free
    127.0.0.1 port (yielded) for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    limits = uvicorn_options(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, **limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
