"""`kiln serve` as a stage: `run(config)` serves until stopped (Ctrl-C, SIGTERM), then returns a `ServeSummary`.

Serve writes no resolved config beside an output, unlike the other stages: it has no output directory (the
models directory is its input, possibly read-only), and its config may hold the API key, which must not land
in a file.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kiln.serve.app import create_app
from kiln.serve.config import ServeConfig
from kiln.serve.connections import uvicorn_options
from kiln.serve.listen import bind
from kiln.serve.models import discover
from kiln.stage import Summary
from kiln.utils.suggest import near_path


@dataclass
class ServeSummary(Summary):
    """What one run of the server did, from its own counters."""

    requests: int
    """HTTP requests answered, whatever their status."""
    tokens_generated: int
    """Tokens generated for /v1/completions and /v1/chat/completions."""
    seconds: float
    """How long the server ran."""
    interrupted: bool = False
    """Stopped by Ctrl-C (SIGINT), which exits 130 as any interrupted kiln command does."""

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 130 if self.interrupted else 0

    def render(self) -> str:
        return (
            f"kiln serve: stopped after {self.seconds:.0f} s: {self.requests} requests answered, "
            f"{self.tokens_generated} tokens generated"
        )


def urls(config: ServeConfig) -> str:
    """The line that tells the user where to point a browser and an OpenAI client."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{config.port}"
    return f"kiln serve: playground {base}/   API {base}/v1"


def require_models(models: Path) -> None:
    """FileNotFoundError / ValueError, in one line, when `models` offers nothing to serve: say what was looked for
    and how to make a model, instead of a server whose every request answers 404."""
    if not models.exists():
        near = near_path(models, accept=Path.is_dir)
        if near is not None:
            raise FileNotFoundError(f"models directory {models} does not exist; did you mean {str(near)!r}?")
        raise FileNotFoundError(f"models directory {models} does not exist: make a model with `kiln quickstart` "
                                f"or `kiln train out_dir={models}/NAME`, or point models= at checkpoints")  # fmt: skip
    if not models.is_dir():
        raise ValueError(f"models={models} is a file: give a directory of checkpoints (or one checkpoint directory)")
    if not discover(models):
        raise ValueError(
            f"no models in {models}: kiln serve looks for checkpoints (a directory with config.json and "
            f"model.safetensors) or training runs (with checkpoints/) in it and below; make one with "
            f"`kiln quickstart` or `kiln train out_dir={models}/NAME`"
        )


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(config: ServeConfig) -> None:
    """The `kiln.serve` logger (access log, model loads, warnings) on stderr, with a timestamp. Its level is INFO
    while the access log is on, else the configured one. Records still propagate (a host application's or a
    test's handlers see them); `kiln` itself configures no root handler, so nothing is printed twice."""
    log = logging.getLogger("kiln.serve")
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s kiln serve: %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
    level = logging.getLevelName(config.log_level.upper()) if config.log_level != "trace" else logging.DEBUG
    log.setLevel(min(logging.INFO, level) if config.access_log else level)


def run(config: ServeConfig) -> ServeSummary:
    """Serve `config.models` on `config.host`:`config.port` until stopped.

    ValueError for a bad config, or for a non-loopback host without an API key (from the config or
    $KILN_API_KEY): that would hand the models, and the machine's compute, to anyone on the network.
    """
    import uvicorn

    config = config.resolved()
    config.validate()
    if not config.is_loopback and not config.api_key:
        raise ValueError(
            f"binding {config.host} exposes the server beyond this machine: give --api-key (or $KILN_API_KEY)"
        )
    require_models(config.models)
    # A busy port fails here, in one line, instead of as uvicorn's log line and exit. The probe is closed at once
    # and uvicorn binds the port itself a moment later (SO_REUSEADDR, as uvicorn binds): only another process
    # starting to listen in between could still take it.
    bind(config.host, config.port).close()
    setup_logging(config)
    app = create_app(config)
    print(urls(config), flush=True)
    started = time.monotonic()
    interrupted = False
    try:
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: SIGINT arrives here as
        # KeyboardInterrupt; SIGTERM's default action ends the process, as a terminated server should.
        uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level, **uvicorn_options(config))
    except KeyboardInterrupt:
        interrupted = True
    metrics = app.state.server.metrics
    return ServeSummary(
        requests=metrics.requests_answered(),
        tokens_generated=metrics.tokens_generated(),
        seconds=round(time.monotonic() - started, 1),
        interrupted=interrupted,
    )
