"""The stage contract, checked for every command in the table: `--help` lists every field with its doc and
default, `CONFIG.toml` + `key=value` works, the command line adds no default of its own, typos get "did you
mean", and `command_line` (what the quickstart prints) parses back to the same config."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from helpers import run_cli
from kiln.command import _required_placeholders, command_line, parse, split_argv
from kiln.config import ConfigError, dump_toml, to_dict
from kiln.stage import Summary, field_docs
from kiln.stages import STAGES

NAMES = list(STAGES)


# Settings a stage cannot run without although no single field is required (generate needs a model source).
NEEDED: dict[str, dict[str, object]] = {
    "generate": {"preset": "tiny"},
    "clean": {"inputs": ["x"]},
    "crawl": {"seeds": ["http://127.0.0.1/"]},
    "rl": {"checkpoint": "x", "inputs": ["x"]},
    "reward": {"checkpoint": "x", "inputs": ["x"]},
    "dpo": {"checkpoint": "x", "inputs": ["x"]},
    "sft": {"checkpoint": "x", "inputs": ["x"]},
    "export gguf": {"out_dir": "x.gguf"},
    "plan": {"flops": 1e21},
}


def _explicit(spec) -> dict[str, object]:
    """Values for the fields a config requires (none of them defaulted), plus what NEEDED adds."""
    required = _required_placeholders(spec.config_class())
    values: dict[str, object] = {k: ["x"] if isinstance(v, list) else "x" for k, v in required.items()}
    return {**values, **NEEDED.get(spec.name, {})}


def _minimal_argv(spec) -> list[str]:
    """Those values as a user would type them: key=value."""
    return [f"{k}=" + (json.dumps(v) if isinstance(v, list) else str(v)) for k, v in _explicit(spec).items()]


def _all_fields(cls: type, prefix: str = "") -> list[tuple[str, type, str]]:
    """(dotted name, class it is declared on, doc) for every field, nested dataclass fields included."""
    out = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        out.append((prefix + f.name, cls, docs[f.name]))
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _all_fields(tp, f"{prefix}{f.name}.")
    return out


@pytest.mark.parametrize("name", NAMES)
def test_every_field_has_a_doc_and_help_shows_it(name: str) -> None:
    spec = STAGES[name]
    cls = spec.config_class()
    fields = _all_fields(cls)
    assert fields, name
    undocumented = [dotted for dotted, _, doc in fields if not doc.strip()]
    assert not undocumented, f"kiln {name}: fields without a docstring: {undocumented}"
    rc, out, err = run_cli([*name.split(), "--help"])
    assert rc == 0, err
    assert out.startswith(f"usage: kiln {name} ")
    for dotted, _, doc in fields:
        leaf = dotted.rsplit(".", 1)[-1]
        assert f"{dotted}" in out or f"[{dotted}]" in out, f"{dotted} missing from kiln {name} --help"
        first_words = " ".join(doc.split()[:4])
        assert first_words in " ".join(out.split()), f"the doc of {dotted} ({leaf}) is missing from --help"
    assert "(undocumented)" not in out


@pytest.mark.parametrize("name", NAMES)
def test_the_command_line_adds_no_default_of_its_own(name: str) -> None:
    """With only the required fields given, the CLI's config is the dataclass's own defaults: each default is
    written once, in the dataclass."""
    spec = STAGES[name]
    cls = spec.config_class()
    argv = _minimal_argv(spec)
    parsed = parse(spec, argv)
    expected = cls(**_explicit(spec))
    assert to_dict(parsed) == to_dict(expected)


@pytest.mark.parametrize("name", NAMES)
def test_config_file_plus_override_for_every_stage(name: str, tmp_path: Path) -> None:
    """`kiln <stage> my.toml key=value`: the file sets every field (here: the defaults, written by dump_toml, as
    `kiln-<stage>.toml` is), and an override on the command line wins over the file."""
    spec = STAGES[name]
    cls = spec.config_class()
    base = parse(spec, _minimal_argv(spec))
    data = to_dict(base)
    # The first int, str or one-of field (other than what _explicit set) gets a new value on the command line.
    hints = typing.get_type_hints(cls)
    fields = sorted(dataclasses.fields(cls), key=lambda f: f.name in _explicit(spec))  # explicit ones last
    key, new = next(
        (f.name, _another(hints[f.name], data[f.name]))
        for f in fields
        if f.init and _another(hints[f.name], data[f.name]) is not None
    )
    toml = tmp_path / "my.toml"
    toml.write_text(dump_toml(data), encoding="utf-8")
    value = str(new).lower() if isinstance(new, bool) else str(new)
    try:
        got = parse(spec, [str(toml), f"{key}={value}"])
    except ConfigError as e:  # a validate() that refuses 7 or "changed" still proves the value arrived
        assert key in str(e), e
        return
    assert getattr(got, key) == new
    assert {k: v for k, v in to_dict(got).items() if k != key} == {k: v for k, v in data.items() if k != key}


def _another(tp: object, value: object) -> object:
    """A different valid value of a bool, int, str or Literal field; None for other types."""
    if tp is bool:
        return not value
    if tp is int:
        return value + 7 if isinstance(value, int) else 7
    if tp is str:
        return f"{value}-changed"
    if typing.get_origin(tp) is typing.Literal:
        return next((c for c in typing.get_args(tp) if c != value), None)
    return None


def test_flags_dashes_aliases_lists_and_bare_arguments() -> None:
    spec = STAGES["generate"]
    argv = ["--preset", "tiny", "--max-new-tokens", "5", "--stop", "a", "--stop=b", "top_k=3", "--no-stream"]
    path, overrides = split_argv(spec, argv)
    assert path is None and overrides[-1] == 'stop=["a", "b"]'  # a list field's values are collected into one
    cfg = parse(spec, argv)
    assert (cfg.max_new_tokens, cfg.stop, cfg.top_k, cfg.stream) == (5, ["a", "b"], 3, False)
    model = parse(STAGES["model"], ["gpt2", "tiny", "--dtype", "fp32"])
    assert (model.names, model.dtype) == (["gpt2", "tiny"], "fp32")
    encode = parse(STAGES["tokenizer encode"], ["--tokenizer", "byte", "hello", "world"])
    assert encode.text == "hello world"  # bare arguments of a text field join with spaces, as a shell splits them


def test_typos_get_did_you_mean() -> None:
    rc, _, err = run_cli(["generate", "--preset", "tiny", "--max-new-tokns", "5"])
    assert rc == 2 and "did you mean max_new_tokens=5?" in err and "Traceback" not in err
    rc, _, err = run_cli(["generate", "--preset", "tiny", "temprature=0"])
    assert rc == 2 and "did you mean temperature=0?" in err
    with pytest.raises(SystemExit) as exc:
        run_cli(["genrate"])
    assert exc.value.code == 2


def test_stray_argument_and_missing_value_are_usage_errors() -> None:
    rc, _, err = run_cli(["generate", "--preset", "tiny", "stray"])
    assert rc == 2 and "unexpected argument 'stray'" in err
    rc, _, err = run_cli(["generate", "--preset"])
    assert rc == 2 and "--preset needs a value" in err


@pytest.mark.parametrize("name", NAMES)
def test_command_line_parses_back_to_the_same_config(name: str) -> None:
    """What the quickstart prints for a config is a command that rebuilds exactly that config."""
    spec = STAGES[name]
    cfg = parse(spec, _minimal_argv(spec))
    explicit = _explicit(spec)
    # Change every int, float, bool and str field a little (the way a quickstart's settings differ from defaults).
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for f in dataclasses.fields(cfg):
        tp, value = hints[f.name], getattr(cfg, f.name)
        if f.name in explicit:
            continue
        if tp is bool:
            changes[f.name] = not value
        elif tp is int and f.name not in ("port",):
            changes[f.name] = value + 1
        elif tp is str and f.name not in ("preset", "device", "tokenizer", "prompt"):
            changes[f.name] = value + "-x" if value else "y"
    try:
        changed = dataclasses.replace(cfg, **changes)
        changed.validate() if hasattr(changed, "validate") else None
    except (ValueError, TypeError):
        changed = cfg  # a config whose fields constrain each other: the defaults still have to round-trip
    argv = command_line(spec, changed)
    assert to_dict(parse(spec, argv)) == to_dict(changed), argv


def test_summaries_render_and_write_json(tmp_path: Path) -> None:
    rc, out, _ = run_cli(["model", "tiny"])
    assert rc == 0 and out.splitlines()[2].startswith("tiny ")
    from kiln.model.report import ModelReportConfig, run

    summary = run(ModelReportConfig(names=["tiny"]))
    assert isinstance(summary, Summary)
    path = summary.write(tmp_path / "summary.json")
    import json

    assert json.loads(path.read_text())["rows"][0]["name"] == "tiny"
