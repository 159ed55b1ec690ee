"""The step registry: a step's name in a pipeline config -> the class that implements it, and how to build one.

One registry for the whole of `kiln clean`: config validation, the runner and the workers all read `STEPS`
through this module (`registry.STEPS`, never a copy imported by name), so a test that swaps in stand-in steps
patches this one attribute and every part of the run sees them.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import types
import typing
from typing import Any

from kiln.clean.pipeline import Step

# name -> (module, class, runs in phase 2). Imported lazily: a pipeline without a step never loads its model.
STEPS: dict[str, tuple[str, str, bool]] = {
    "url_filter": ("kiln.clean.url_filter", "URLFilter", False),
    "extract": ("kiln.clean.extract", "Extractor", False),
    "langid": ("kiln.clean.langid", "LanguageFilter", False),
    "gopher_repetition": ("kiln.clean.filters", "GopherRepetitionFilter", False),
    "gopher_quality": ("kiln.clean.filters", "GopherQualityFilter", False),
    "c4": ("kiln.clean.filters", "C4QualityFilter", False),
    "fineweb": ("kiln.clean.filters", "FineWebQualityFilter", False),
    "exact_dedup": ("kiln.clean.dedup", "ExactDedup", True),
    "minhash_dedup": ("kiln.clean.dedup", "MinHashDedup", True),
    "pii": ("kiln.clean.pii", "PIIRedactor", False),
}
DEFAULT_STEPS = list(STEPS)  # FineWeb's order
# Where FineWeb's pipeline sets a step differently from the step's own (datatrove's) defaults; options given
# in a pipeline config still win. FineWeb keeps C4's lines that do not end in punctuation.
STEP_DEFAULTS: dict[str, dict[str, Any]] = {"c4": {"filter_no_terminal_punct": False}}

StepSpec = dict[str, Any]  # one [[steps]] table: {"name": ..., **options}
StepTarget = tuple[str, str]  # (module, class)


def resolve_steps(specs: list[StepSpec]) -> list[StepTarget]:
    """(module, class) of each step, looked up in the driver: a worker that imports kiln afresh (Ray, a spawned
    process) sees only the built-in STEPS, not steps registered at run time (as the tests do)."""
    return [STEPS[s["name"]][:2] for s in specs]


def build_step(spec: StepSpec, target: StepTarget | None = None) -> Step:
    """The step named by `spec`, from `target` (module, class) when given, else from the registry.

    A misspelt or misplaced option is a ValueError naming the step, the option and the valid ones (a step's
    own checks of its values raise ValueError too), so a bad pipeline stops before any shard is read.
    """
    name = spec["name"]
    module, cls_name = target or STEPS[name][:2]
    cls = getattr(importlib.import_module(module), cls_name)
    kwargs = {**STEP_DEFAULTS.get(name, {}), **{k: v for k, v in spec.items() if k != "name"}}
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        options = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(
            f"steps: step {name!r}: bad option ({e}); its options: {', '.join(options) or 'none'}"
        ) from None
    check_option_types(name, cls, kwargs)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, OverflowError, MemoryError) as e:
        raise ValueError(f"steps: step {name!r}: bad option ({e})") from None


def check_option_types(name: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Each option against the type its constructor declares, with the same rules as a config file's fields
    (`kiln.config`: no "16" for an int, no 1.5 for an int, no true for a number), so a TOML typo is one line
    naming the step and the option before the step exists, not a TypeError deep in a worker. Options whose
    annotation a TOML value cannot be checked against (a callable, say) are left to the step itself."""
    from kiln.config import ConfigError, convert_value

    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve at run time: nothing to check against
        return
    for option, value in kwargs.items():
        tp = _checkable(hints.get(option, Any))
        if tp is None:
            continue
        try:
            convert_value(tp, value, option, "")
        except ConfigError as e:
            raise ValueError(f"steps: step {name!r}: bad option ({e})") from None
        except TypeError:  # an annotation kiln.config does not know: the step checks the value itself
            continue


def _checkable(tp: Any) -> Any:
    """`tp` with abstract collections (Iterable[X], Sequence[X]) as list[X], which is what TOML gives; None
    where some part cannot come from TOML at all (a callable)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is collections.abc.Callable or tp is collections.abc.Callable:
        return None
    if origin in (collections.abc.Iterable, collections.abc.Sequence, collections.abc.Collection):
        inner = _checkable(args[0]) if args else Any
        return None if inner is None else list[inner]  # type: ignore[valid-type]
    if origin is typing.Union or origin is types.UnionType:
        arms = [_checkable(a) for a in args]
        if any(a is None for a in arms):
            return None
        return typing.Union[tuple(arms)]  # noqa: UP007
    if origin in (list, tuple, dict) and args:
        inner = [a if a is Ellipsis else _checkable(a) for a in args]
        if any(a is None for a in inner):
            return None
        return origin[tuple(inner)]
    return tp


def split_phases(specs: list[StepSpec]) -> tuple[list[StepSpec], list[StepSpec]]:
    """Steps before the first dedup step run per shard; the rest run once over everything, in order."""
    for i, spec in enumerate(specs):
        if STEPS[spec["name"]][2]:
            return specs[:i], specs[i:]
    return specs, []
