"""`kiln serve` as a stage: `run(config)` serves until stopped (Ctrl-C, SIGTERM), then returns a `ServeSummary`.

Serve writes no resolved config beside an output, unlike the other stages: it has no output directory (the
models directory is its input, possibly read-only), and its config may hold the API key, which must not land
in a file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kiln.serve.app import create_app
from kiln.serve.config import ServeConfig
from kiln.serve.connections import uvicorn_options
from kiln.stage import Summary


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
