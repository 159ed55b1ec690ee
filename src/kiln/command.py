"""One command-line grammar for every stage, derived from its config dataclass (no option is declared by hand).

    kiln <stage> [CONFIG.toml] [ARG ...] [key=value ...] [--key value ...] [--flag | --no-flag]

- `CONFIG.toml` (or `--config FILE`): any of the config's keys, including tables such as `[model]` or `[[steps]]`;
- `key=value` / `--key value` / `--key=value`: one field; dashes and underscores are the same (`--max-depth 3` is
  `max_depth=3`), dotted keys reach nested tables (`model.n_layer=4`); values are TOML when they parse as TOML
  (`3e-4`, `true`, `[1, 2]`) and text otherwise, and the field's type decides (`name=12` is the text "12");
- `--flag` / `--no-flag` for a boolean field; a list field given several times collects every value
  (`--stop a --stop b`);
- bare arguments fill the stage's positional field (`kiln clean a.warc b.warc` sets `inputs`).
The file comes first, then the command line in order, later values winning. Typos get "did you mean", wrong
types name the key, and every default lives only in the dataclass, so `--help` shows exactly what a run uses.

Why not a library: tyro, jsonargparse and pydantic-settings all build `--key value` parsers from typed signatures,
but none accepts `key=value` overrides on top of a TOML file (the form nanoGPT-style recipes and kiln's saved
configs use) without a wrapper of about this size, and their help lists nested dataclasses as dozens of
`--model.n-layer` flags with type signatures rather than the field docs. kiln.config already did the strict
typing and TOML; this module adds only the argv grammar (~150 lines) and the help text.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import typing
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, get_args, get_origin

from kiln.config import ConfigError, describe_type, load_config, plain, to_dict, toml_value
from kiln.stage import field_docs
from kiln.stages import Spec
from kiln.utils.suggest import closest

_OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*=")


class UsageError(ConfigError):
    """The command line itself is malformed (an option without its value, a stray argument)."""


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _is_list(tp: Any) -> bool:
    tp = _strip_optional(tp)
    return tp is list or get_origin(tp) is list


def _is_bool(tp: Any) -> bool:
    return _strip_optional(tp) is bool


def _strip_optional(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    if len(args) == 1 and type(None) in get_args(tp):
        return args[0]
    return tp


def split_argv(spec: Spec, argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(config file or None, overrides as `key=value` strings in command-line order) for `spec`'s command."""
    fields = _fields(spec.config_class())
    path: str | None = None
    overrides: list[str] = []
    lists: dict[str, list[str]] = {}
    bare: list[str] = []

    def key_of(name: str) -> str:
        name = name.replace("-", "_")
        head, dot, rest = name.partition(".")
        return spec.aliases.get(head, head) + dot + rest

    def add(key: str, value: str) -> None:
        if key in fields and _is_list(fields[key]):
            lists.setdefault(key, []).append(value)
        else:
            overrides.append(f"{key}={value}")

    i, rest_bare = 0, False
    args = list(argv)
    while i < len(args):
        arg = args[i]
        i += 1
        if rest_bare:
            bare.append(arg)
        elif arg == "--":
            rest_bare = True
        elif arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            key = key_of(name)
            if key == "config":
                if not eq:
                    if i >= len(args):
                        raise UsageError("--config needs a file")
                    value, i = args[i], i + 1
                path = _one_file(path, value)
                continue
            if not eq and key in fields and _is_bool(fields[key]):
                overrides.append(f"{key}=true")
            elif not eq and key.startswith("no_") and key[3:] in fields and _is_bool(fields[key[3:]]):
                overrides.append(f"{key[3:]}=false")
            else:
                if not eq:
                    if i >= len(args):
                        raise UsageError(f"--{name} needs a value")
                    value, i = args[i], i + 1
                add(key, value)
        elif _OVERRIDE.match(arg):
            key, _, value = arg.partition("=")
            key = key_of(key)
            if key in fields and _is_list(fields[key]) and not value.lstrip().startswith("["):
                add(key, value)  # one item of a list field; `key=[...]` sets the whole list
            else:
                overrides.append(f"{key}={value}")
        elif arg.endswith(".toml") and "://" not in arg:  # no stage reads .toml inputs; a URL may end so
            path = _one_file(path, arg)
        else:
            _check_bare(spec, fields, arg, args[i] if i < len(args) else None)
            bare.append(arg)
    if bare:
        if spec.positional is None:
            raise UsageError(f"unexpected argument {bare[0]!r}: settings look like key=value or --key value")
        if _is_list(fields[spec.positional]):
            lists.setdefault(spec.positional, [])[:0] = bare  # bare arguments first, then --key additions
        else:
            overrides.insert(0, f"{spec.positional}={' '.join(bare)}")
    for key, values in lists.items():
        overrides.append(f"{key}={toml_value(values, key)}")
    return path, overrides


def _check_bare(spec: Spec, fields: dict[str, Any], arg: str, following: str | None) -> None:
    """UsageError, with the setting as it should be typed, for a bare argument that is a setting in disguise: one
    dash (`-max_new_tokens 20`), or a field's name where the command takes no bare arguments (`max_steps 5`).
    A stage's own bare arguments (files, URLs, words) pass, as does anything that is not close to a field."""
    one_dash = arg.startswith("-") and not arg.startswith("--") and len(arg) > 1 and not _is_number(arg)
    if not one_dash and spec.positional is not None:
        return
    name, eq, value = arg.lstrip("-").partition("=")
    name = spec.aliases.get(name.replace("-", "_"), name)
    match = closest(name, [f for f in fields if f != "config"])
    if match is None:
        if one_dash:
            raise UsageError(f"unknown option {arg!r}: settings look like key=value or --key value (see --help)")
        return
    if not eq:
        value = following if following is not None and not following.startswith("-") else "VALUE"
    kind = "options take two dashes (or none: key=value)" if one_dash else "settings look like key=value"
    raise UsageError(f"unexpected argument {arg!r}: {kind}; did you mean {match}={value}?")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _one_file(current: str | None, new: str) -> str:
    if current is not None:
        raise UsageError(f"give at most one config file, got {current} and {new}; overrides look like key=value")
    return new


def parse(spec: Spec, argv: Sequence[str]) -> Any:
    """The config `argv` asks for: the stage's loader (or `load_config`) over the file and the overrides."""
    path, overrides = split_argv(spec, argv)
    loader = spec.loader()
    if loader is not None:
        return loader(path, overrides)
    return load_config(spec.config_class(), path, overrides)


# ---------------------------------------------------------------------------------------------------- help


def help_text(spec: Spec) -> str:
    """`kiln <stage> --help`: usage, then every field (nested tables too) with its type, default and doc."""
    cls = spec.config_class()
    pos = f" [{spec.positional.upper()} ...]" if spec.positional else ""
    lines = [
        f"usage: kiln {spec.name} [CONFIG.toml]{pos} [key=value ...] [--key value ...]",
        "",
        spec.help,
        "",
        "Settings (key=value, --key value or in CONFIG.toml; later ones win"
        + (f"; bare arguments fill {spec.positional}" if spec.positional else "")
        + "):",
    ]
    reverse = {v: k for k, v in spec.aliases.items()}
    _describe_fields(cls, cls(**_required_placeholders(cls)), "", reverse, lines)
    return "\n".join(lines)


def _required_placeholders(cls: type) -> dict[str, Any]:
    hints = _fields(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            tp = _strip_optional(hints[f.name])
            tp = get_origin(tp) or tp  # list[str] -> list
            out[f.name] = tp() if isinstance(tp, type) else None
    return out


def _describe_fields(cls: type, instance: Any, prefix: str, aliases: dict[str, str], lines: list[str]) -> None:
    docs = field_docs(cls)
    hints = _fields(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(_strip_optional(tp)) and dataclasses.is_dataclass(value):
            lines.append(f"  [{prefix}{f.name}]  {docs[f.name]}".rstrip())
            _describe_fields(type(value), value, f"{prefix}{f.name}.", {}, lines)
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = "required" if required else f"default {_show_default(value)}"
        alias = f" (--{aliases[f.name]})" if f.name in aliases else ""
        lines.append(f"  {prefix}{f.name}{alias}: {_type_name(tp)}, {default}")
        for para in (docs[f.name] or "(undocumented)").split("\n"):
            lines.extend(textwrap.wrap(para, 112, initial_indent="      ", subsequent_indent="      ") or [""])


def _show_default(value: Any) -> str:
    if value is None:
        return "none"
    value_plain = plain(value)
    if isinstance(value, PurePath):
        return str(value)
    try:
        return toml_value(value_plain, "default")
    except ConfigError:
        return repr(value_plain)


def _type_name(tp: Any) -> str:
    return describe_type(tp).replace("NoneType", "None")


# --------------------------------------------------------------------------------------- config -> argv


def command_line(spec: Spec, config: Any) -> list[str]:
    """The arguments after `kiln <stage>` that rebuild `config`: its positional values bare, then each field that
    differs from what the command would otherwise use, so `parse(spec, command_line(spec, c)) == c`. Nested tables
    (`model.*`) are compared with the config the top-level settings alone give (train's preset picks the model's
    shape), so only what differs from that is printed. The quickstart prints these before running each stage."""
    cls = type(config)
    defaults = to_dict(cls(**_required_placeholders(cls)))
    current = to_dict(config)
    reverse = {v: k for k, v in spec.aliases.items()}
    argv: list[str] = []
    if spec.positional and spec.positional in current:
        value = current.pop(spec.positional)
        argv += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    tables = [k for k, v in current.items() if isinstance(v, dict)]
    for key, value in current.items():
        if key not in tables and (key not in defaults or defaults[key] != value):
            argv += _render(reverse.get(key, key), key, value)
    if tables:
        base = to_dict(parse(spec, argv))
        for table in tables:
            for dotted, value in _flatten(current[table], f"{table}."):
                if _lookup(base, dotted) != (True, value):
                    argv.append(f"{dotted}=none" if value is None else f"{dotted}={toml_value(value, dotted)}")
    return argv


def _render(name: str, key: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if value is None:
        return [f"{key}=none"]
    if isinstance(value, bool):
        return [flag] if value else [f"--no-{name.replace('_', '-')}"]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [arg for v in value for arg in (flag, v)]
    if isinstance(value, str):
        return [flag, value]
    return [f"{key}={toml_value(value, key)}"]


def _flatten(data: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _lookup(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
