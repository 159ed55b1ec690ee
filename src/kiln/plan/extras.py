"""The optional libraries of `kiln sweep` (scipy and threadpoolctl for the fits, matplotlib for the plots),
imported only when needed, with a one-line error naming the extra to install instead of a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ValueError):
    """An optional dependency of kiln.plan is not installed (a ValueError, so the CLI prints one line)."""


def need(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtra(
            f"kiln sweep needs {top}: pip install 'kiln[plan]' (scipy, threadpoolctl, matplotlib)"
        ) from e
