"""kiln.serve: an OpenAI-compatible API and a web playground over kiln checkpoints (nothing imports this).

The stage: `run(ServeConfig(models=...))` serves until stopped and returns a `ServeSummary`;
`create_app(config)` gives the ASGI app alone (tests, or another server).
"""

from kiln.serve.app import create_app
from kiln.serve.config import ServeConfig
from kiln.serve.run import ServeSummary, run

__all__ = ["ServeConfig", "ServeSummary", "create_app", "run"]
