"""Typed configs: dataclasses loaded from TOML and overridden with ``key=value`` arguments.

Why: a run's settings should be one typed object that can be written next to its checkpoint and read back
exactly, and a typo (``model.n_layr=4``) or a wrong type should stop the run before it starts instead of being
silently ignored hours later. Only the standard library is used so that configs load without torch.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from kiln.utils.suggest import closest

__all__ = [
    "ConfigError",
    "apply_overrides",
    "convert_value",
    "describe_type",
    "dump_toml",
    "from_dict",
    "load_config",
    "parse_override",
    "plain",
    "to_dict",
    "toml_value",
]

T = TypeVar("T")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


class ConfigError(ValueError):
    """A config could not be built; the message names the file or key and what is wrong.

    A ValueError subclass so callers that already treat bad values as ValueError keep working.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class _Override:
    """A value that came from a command-line override, kept with the text it was parsed from.

    Why: ``name=12`` parses as the int 12, but for a str field the user meant ``"12"`` (and ``name=1e3``
    meant ``"1e3"``, not ``"1000.0"``); keeping the text lets the field type decide. Only `load_config`
    creates these.
    """

    value: Any
    text: str  # the right-hand side exactly as typed
    source: str  # the whole override, quoted in error messages


# ----------------------------------------------------------------------------------------------------------
# dict -> dataclass


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass `cls` from a (possibly nested) dict, checking every key and type.

    Why strict: a misspelt key or a value of the wrong type is almost always a mistake that would otherwise
    silently fall back to a default. `where` (e.g. a file name) prefixes every error message.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict expects a dataclass type, got {cls!r}")
    if isinstance(data, _Override):
        data = data.value
    if not isinstance(data, Mapping):
        raise _error(where, f"expected a table for {cls.__name__}, got {_show(data)}")
    return _build(cls, data, "", where)


def _build(cls: type[T], data: Mapping[Any, Any], prefix: str, where: str) -> T:
    """Construct one dataclass level; `prefix` is the dotted path of this table, for messages."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as e:  # a string annotation naming something not visible at module level
        raise TypeError(f"cannot resolve the type annotations of {cls.__qualname__}: {e}") from e
    init_fields = {f.name: f for f in dataclasses.fields(cls) if f.init}

    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if not isinstance(key, str) or key not in init_fields:
            raise _error(where, _unknown_key_message(cls, key, dotted, list(init_fields), value))
        kwargs[key] = _convert(hints[key], value, dotted, where)

    missing = [
        f"{prefix}.{name}" if prefix else name
        for name, f in init_fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _error(where, f"missing required key(s) for {cls.__name__}: {', '.join(missing)}")

    # __post_init__ and validate() report bad combinations of values as ValueError; add the file/key context.
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ValueError as e:
        label = f"{prefix}: " if prefix else ""
        raise _error(where, f"{label}invalid {cls.__name__}: {e}") from e
    return obj


def _unknown_key_message(cls: type, key: Any, dotted: str, valid: list[str], value: Any) -> str:
    """Say which key is unknown, where, what would be valid, and the likely intended key."""
    msg = f"unknown key {dotted!r} in {cls.__name__}"
    match = closest(key, valid) if isinstance(key, str) else None
    if match is not None:
        # From the command line, the whole setting as it should have been typed (`--max-tokens 20` -> the
        # field's real name with the same value); from a file, the key's name.
        prefix = dotted[: len(dotted) - len(key)]
        if isinstance(value, _Override):
            msg += f"; did you mean {prefix}{match}={value.text}?"
        else:
            msg += f"; did you mean {match!r}?"  # as written in its table of the file
    msg += f" (valid keys: {', '.join(valid) if valid else 'none'})"
    if isinstance(value, _Override):
        msg += f" (from override {value.source!r})"
    return msg


def _convert(tp: Any, value: Any, key: str, where: str, note: str = "") -> Any:
    """Check/coerce one value to annotation `tp`, unwrapping override markers first."""
    raw: str | None = None
    if isinstance(value, _Override):
        raw, note, value = value.text, f" (from override {value.source!r})", value.value
    return _coerce(tp, value, raw, key, where, note)


def _coerce(tp: Any, value: Any, raw: str | None, key: str, where: str, note: str) -> Any:
    """The type rules. `raw` is the override text when the value came from the command line, else None.

    Coercions are only the unambiguous ones: int -> float, str -> Path, and (for overrides only) the typed
    text for str/Path/Literal/Enum/bool fields.
    """
    if tp is Any or tp is object:
        return value
    origin = get_origin(tp)
    args = get_args(tp)

    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: let X's own (more precise) error through
            return _coerce(arms[0], value, raw, key, where, note)
        # Try every arm strictly before letting any arm fall back to the raw text, so `int | str` keeps 12.
        for attempt_raw in (None, raw) if raw is not None else (None,):
            for arm in arms:
                try:
                    return _coerce(arm, value, attempt_raw, key, where, note)
                except ConfigError:
                    pass
        raise _mismatch(tp, value, key, where, note)

    if tp is type(None):
        if value is None:
            return None
        raise _mismatch(tp, value, key, where, note)

    if origin is Literal:
        for choice in args:
            if type(choice) is type(value) and choice == value:  # type check so True never matches 1
                return choice
        if raw is not None and raw in [c for c in args if isinstance(c, str)]:
            return raw
        raise _mismatch(tp, value, key, where, note)

    if origin is list or tp is list:
        if not isinstance(value, list | tuple):
            raise _mismatch(tp, value, key, where, note)
        (item_tp,) = args or (Any,)
        return [_convert(item_tp, v, f"{key}[{i}]", where, note) for i, v in enumerate(value)]

    if origin is tuple or tp is tuple:
        if not isinstance(value, list | tuple):
            raise _mismatch(tp, value, key, where, note)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", where, note) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _error(where, f"{key}: expected {_describe(tp)} ({len(args)} items), got {_show(value)}{note}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(t, v, f"{key}[{i}]", where, note) for i, (t, v) in pairs)

    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _mismatch(tp, value, key, where, note)
        key_tp, val_tp = args or (Any, Any)
        return {
            _coerce(key_tp, k, None, f"{key} (key {k!r})", where, note): _convert(val_tp, v, f"{key}.{k}", where, note)
            for k, v in value.items()
        }

    if not isinstance(tp, type):
        raise TypeError(f"{key}: unsupported type annotation {tp!r}")

    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value, key, where)
        raise _mismatch(tp, value, key, where, note)

    if issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if type(member.value) is type(value) and member.value == value:
                return member
        if isinstance(value, str) and value in tp.__members__:
            return tp.__members__[value]
        if raw is not None:
            for member in tp:
                if raw in (member.name, str(member.value)):
                    return member
        raise _mismatch(tp, value, key, where, note)

    if tp is bool:
        if isinstance(value, bool):
            return value
        if raw is not None and raw.strip().lower() in ("true", "false"):  # e.g. compile=True
            return raw.strip().lower() == "true"
        raise _mismatch(tp, value, key, where, note)

    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _mismatch(tp, value, key, where, note)

    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _mismatch(tp, value, key, where, note)

    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None:  # name=12 / name=1e3 / name=true: the user typed a string
            return raw
        raise _mismatch(tp, value, key, where, note)

    if issubclass(tp, PurePath):
        if isinstance(value, tp):
            return value
        if isinstance(value, str | PurePath):
            return tp(value)
        if raw is not None:
            return tp(raw)
        raise _mismatch(tp, value, key, where, note)

    if isinstance(value, tp):  # any other class, e.g. datetime.date, which TOML produces natively
        return value
    raise _mismatch(tp, value, key, where, note)


def _describe(tp: Any) -> str:
    """A short human-readable name for an annotation, for error messages."""
    if tp is type(None):
        return "None"
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_describe(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if not args:
            return name
        return f"{name}[{', '.join('...' if a is Ellipsis else _describe(a) for a in args)}]"
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return f"{tp.__name__} (one of {', '.join(repr(m.value) for m in tp)})"
        if dataclasses.is_dataclass(tp):
            return f"a table ({tp.__name__})"
        return tp.__name__
    return str(tp).replace("typing.", "")


def _show(value: Any) -> str:
    """The received value and its type, shortened so a huge value cannot flood the message."""
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _mismatch(tp: Any, value: Any, key: str, where: str, note: str) -> ConfigError:
    return _error(where, f"{key}: expected {_describe(tp)}, got {_show(value)}{note}")


def _error(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}" if where else message)


# ----------------------------------------------------------------------------------------------------------
# dataclass -> dict / TOML


def to_dict(obj: Any) -> dict[str, Any]:
    """Convert a dataclass instance to plain nested dicts/lists/scalars.

    Paths become str, tuples lists, enums their values.

    Why: that is the form TOML/JSON writers and `from_dict` understand, so a config can be saved and rebuilt.
    Only `init` fields are included, since only those can be passed back to the constructor.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict expects a dataclass instance, got {type(obj).__name__}")
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dump_toml(obj: Any) -> str:
    """Write a dataclass instance (or a plain dict) as TOML that `load_config` reads back to an equal object.

    Why a writer here: tomllib only reads, and saving the exact config next to a run makes it reproducible.
    None values are omitted (TOML has no null), so a None only round-trips when the field's default is None.
    """
    data = dict(obj) if isinstance(obj, Mapping) else to_dict(obj)
    lines: list[str] = []
    _write_table(lines, _plain(data), [])
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], table: Mapping[str, Any], path: list[str]) -> None:
    """Write `table`'s plain keys, then each sub-table under its own [header], then each list of flat tables as
    [[header]] blocks (e.g. clean's [[steps]]: easier to read and edit than one line of inline tables). TOML
    requires plain keys before any header."""
    if path:
        lines.append("")
        lines.append(f"[{'.'.join(_toml_key(p) for p in path)}]")
    for key, value in table.items():
        if value is not None and not isinstance(value, Mapping) and not _is_table_array(value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join([*path, key]))}")
    for key, value in table.items():
        if isinstance(value, Mapping):
            _write_table(lines, value, [*path, key])
    for key, value in table.items():
        if _is_table_array(value):
            header = ".".join(_toml_key(p) for p in [*path, key])
            for i, item in enumerate(value):
                lines += ["", f"[[{header}]]"]
                for k, v in item.items():
                    if v is not None:
                        lines.append(f"{_toml_key(k)} = {_toml_value(v, f'{header}[{i}].{k}')}")


def _is_table_array(value: Any) -> bool:
    """A non-empty list of tables whose values are all plain (no nested table): written as [[header]] blocks."""
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) and not any(isinstance(x, Mapping) for x in v.values()) for v in value)
    )


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest text that round-trips exactly
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{key}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, Mapping):  # only reached inside arrays: write an inline table
        items = [f"{_toml_key(k)} = {_toml_value(v, f'{key}.{k}')}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    if value is None:
        raise ConfigError(f"{key}: TOML cannot represent None inside an array")
    raise ConfigError(f"{key}: cannot write a {type(value).__name__} value ({value!r}) as TOML")


# ----------------------------------------------------------------------------------------------------------
# command-line overrides and loading


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b=value"`` into ``("a.b", parsed_value)``.

    The value is read as a TOML value when it is one (``3e-4``, ``12``, ``true``, ``"x"``, ``[1, 2]``) so
    types come out right without quoting, and is otherwise kept as the raw string so ``name=gpt2`` and
    ``out_dir=runs/x`` need no shell-hostile quotes. ``none``/``null`` (any case) give None.
    """
    key, value, _ = _split_override(text)
    return key, value


def _split_override(text: str) -> tuple[str, Any, str]:
    """Like `parse_override`, also returning the right-hand side as typed."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. model.n_layer=4)")
    parts = [p.strip() for p in key.split(".")]
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key or key part before '='")
    return ".".join(parts), _parse_value(raw), raw


def _parse_value(raw: str) -> Any:
    stripped = raw.strip()
    if stripped.lower() in ("none", "null"):
        return None
    if not stripped:
        return raw
    try:
        parsed = tomllib.loads(f"v = {stripped}")
    except tomllib.TOMLDecodeError:
        return raw
    if set(parsed) != {"v"}:  # the text held more than one value (e.g. an embedded newline and "k = ...")
        return raw
    return parsed["v"]


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `data` with each ``dotted.key=value`` set, creating sub-tables as needed.

    Keys are not checked here: `from_dict` does that against the dataclass, where it knows the valid names.
    The input is not modified.
    """
    return _apply_overrides(data, overrides, mark=False)


def _apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, mark: bool) -> dict[str, Any]:
    if isinstance(overrides, str):  # a lone string would otherwise be applied one character at a time
        raise TypeError("overrides must be a sequence of 'key=value' strings, not a single string")
    out = _copy_tables(data)
    for text in overrides:
        key, value, raw = _split_override(text)
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, _Override):  # an earlier override set this whole table
                child = child.value
            if child is None:
                child = {}
            elif isinstance(child, Mapping):
                child = _copy_tables(child)
            else:
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override {text!r}: cannot set {key!r} because {where!r} is {child!r}, not a table")
            node[part] = child
            node = child
        node[parts[-1]] = _Override(value, raw, text) if mark else value
    return out


def _copy_tables(data: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the dict structure (not the leaves) so merging/overriding never mutates the caller's data."""
    return {k: _copy_tables(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `update` into a copy of `base`; tables merge key by key, anything else is replaced."""
    out = _copy_tables(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _copy_tables(value) if isinstance(value, Mapping) else value
    return out


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: T | None = None,
) -> T:
    """Build `cls` from `base` (or the defaults), then the TOML file at `path`, then the `overrides`.

    Why layered: a run starts from code defaults or a known config, a file records an experiment, and
    command-line overrides tweak one run. Override values typed as text are coerced to the field's type when
    that is unambiguous (``name=12`` -> ``"12"`` for a str field, ``lr=1`` -> ``1.0``).
    """
    data: dict[str, Any] = to_dict(base) if base is not None else {}
    where = ""
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            with p.open("rb") as f:
                file_data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not valid UTF-8: {e}") from e
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e}") from e
        data = _deep_merge(data, file_data)
    data = _apply_overrides(data, overrides, mark=True)
    return from_dict(cls, data, where=where)


# Public names for the CLI (kiln.command), which renders types, defaults and values the way configs are written.
describe_type = _describe
plain = _plain
toml_value = _toml_value
convert_value = _convert  # check/coerce one value to an annotation (clean's step options use the same rules)
