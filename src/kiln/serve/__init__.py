"""kiln.serve: an OpenAI-compatible API and a web playground over kiln checkpoints (nothing imports this)."""

from kiln.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
