"""Tests for kiln.config: TOML loading, key=value overrides, type checking and the TOML writer."""

# String annotations on purpose: from_dict must resolve them with typing.get_type_hints.
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from kiln.config import (
    ConfigError,
    apply_overrides,
    dump_toml,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)


class Activation(enum.Enum):
    GELU = "gelu"
    RELU = "relu"


@dataclass
class ModelConfig:
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    act: Activation = Activation.GELU

    def validate(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


@dataclass
class TrainConfig:
    name: str  # required: no default
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    compile: bool = False
    seed: int | None = None
    eval_iters: list[int] = field(default_factory=lambda: [10, 20])
    betas: tuple[float, ...] = (0.9, 0.95)
    out_dir: Path = Path("runs/default")
    tags: dict[str, str] = field(default_factory=dict)
    note: str | None = None


def write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BASIC_TOML = """
name = "tiny"
lr = 0.01
optimizer = "sgd"
eval_iters = [1, 2, 3]
betas = [0.8, 0.99]
out_dir = "runs/tiny"
seed = 7

[model]
n_layer = 3
act = "relu"

[tags]
dataset = "shakespeare"
"""


def test_load_toml_file(tmp_path: Path) -> None:
    cfg = load_config(TrainConfig, write(tmp_path, BASIC_TOML))
    assert cfg.name == "tiny"
    assert cfg.lr == 0.01 and type(cfg.lr) is float
    assert cfg.optimizer == "sgd"
    assert cfg.eval_iters == [1, 2, 3]
    assert cfg.betas == (0.8, 0.99) and isinstance(cfg.betas, tuple)
    assert cfg.out_dir == Path("runs/tiny") and isinstance(cfg.out_dir, Path)
    assert cfg.seed == 7
    assert cfg.tags == {"dataset": "shakespeare"}
    assert isinstance(cfg.model, ModelConfig)
    assert cfg.model.n_layer == 3
    assert cfg.model.n_head == 2  # default kept for keys the file leaves out
    assert cfg.model.act is Activation.RELU
    assert cfg.compile is False


def test_nested_override_merges_with_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC_TOML)
    cfg = load_config(TrainConfig, path, ["model.n_layer=4", "model.n_embd=128"])
    assert cfg.model.n_layer == 4
    assert cfg.model.n_embd == 128
    assert cfg.model.act is Activation.RELU  # from the file, untouched by the overrides
    assert cfg.name == "tiny"


def test_float_and_bool_overrides() -> None:
    cfg = load_config(TrainConfig, overrides=["name=a", "lr=3e-4", "compile=true"])
    assert cfg.lr == pytest.approx(3e-4) and type(cfg.lr) is float
    assert cfg.compile is True

    cfg = load_config(TrainConfig, overrides=["name=a", "lr=1", "compile=False"])
    assert cfg.lr == 1.0 and type(cfg.lr) is float  # int accepted for a float field
    assert cfg.compile is False


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("name=12", "12"),
        ("name=1e3", "1e3"),
        ("name=true", "true"),
        ("name=none", "none"),
        ("name=gpt2", "gpt2"),
    ],
)
def test_str_field_keeps_typed_text(override: str, expected: str) -> None:
    cfg = load_config(TrainConfig, overrides=[override])
    assert cfg.name == expected and type(cfg.name) is str


def test_path_and_list_overrides() -> None:
    cfg = load_config(TrainConfig, overrides=["name=a", "out_dir=runs/x", "eval_iters=[5, 6]", "betas=[0.5, 1]"])
    assert cfg.out_dir == Path("runs/x") and isinstance(cfg.out_dir, Path)
    assert cfg.eval_iters == [5, 6]
    assert cfg.betas == (0.5, 1.0) and all(type(b) is float for b in cfg.betas)

    cfg = load_config(TrainConfig, overrides=["name=a", "out_dir=2024"])
    assert cfg.out_dir == Path("2024")


def test_none_override_clears_optional(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC_TOML)
    assert load_config(TrainConfig, path).seed == 7
    assert load_config(TrainConfig, path, ["seed=none"]).seed is None
    assert load_config(TrainConfig, path, ["seed=NULL", "note=None"]).note is None
    assert load_config(TrainConfig, path, ["note=hello"]).note == "hello"


def test_base_config_is_starting_point(tmp_path: Path) -> None:
    base = TrainConfig(name="base", lr=0.5, model=ModelConfig(n_layer=6), betas=(0.1, 0.2))
    cfg = load_config(TrainConfig, write(tmp_path, "[model]\nn_head = 4\n"), ["lr=0.25"], base=base)
    assert cfg.name == "base"
    assert cfg.lr == 0.25
    assert cfg.model.n_layer == 6 and cfg.model.n_head == 4
    assert cfg.betas == (0.1, 0.2)
    assert base.lr == 0.5  # the base object is not modified


def test_unknown_top_level_key_suggests() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, overrides=["name=a", "lrr=0.1"])
    msg = str(exc.value)
    assert "unknown key 'lrr'" in msg
    assert "did you mean lr=0.1?" in msg  # the override as it should have been typed
    assert "valid keys:" in msg and "optimizer" in msg
    assert "lrr=0.1" in msg  # points back at the override that introduced it


def test_unknown_nested_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[model]\nn_layr = 3\n', name="typo.toml")
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, path)
    msg = str(exc.value)
    assert "'model.n_layr'" in msg
    assert "did you mean 'n_layer'?" in msg
    assert "n_head" in msg  # valid keys of the nested table are listed
    assert str(path) in msg


def test_unknown_nested_key_from_override() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_hed.*did you mean model\.n_head=4\?"):
        load_config(TrainConfig, overrides=["name=a", "model.n_hed=4"])


@pytest.mark.parametrize(
    ("override", "key", "expected", "got"),
    [
        ('model.n_layer="abc"', "model.n_layer", "expected int", "'abc'"),
        ("model.n_layer=abc", "model.n_layer", "expected int", "'abc'"),
        ("model.n_layer=2.5", "model.n_layer", "expected int", "2.5"),
        ("model.n_layer=true", "model.n_layer", "expected int", "True"),
        ("compile=3", "compile", "expected bool", "3"),
        ("lr=fast", "lr", "expected float", "'fast'"),
        ("eval_iters=[1, 'x']", "eval_iters[1]", "expected int", "'x'"),
        ("seed=1.5", "seed", "expected int", "1.5"),
    ],
)
def test_wrong_type_names_key(override: str, key: str, expected: str, got: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, overrides=["name=a", override])
    msg = str(exc.value)
    assert msg.startswith(f"{key}: ")
    assert expected in msg
    assert got in msg


def test_wrong_type_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\ncompile = 1\n')
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, path)
    assert str(exc.value) == f"{path}: compile: expected bool, got 1 (int)"


def test_file_values_are_not_coerced_to_str(tmp_path: Path) -> None:
    # TOML is typed, so `name = 12` in a file is a mistake; only command-line text is reinterpreted.
    with pytest.raises(ConfigError, match=r"name: expected str, got 12 \(int\)"):
        load_config(TrainConfig, write(tmp_path, "name = 12\n"))


def test_literal_invalid_value_lists_choices() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, overrides=["name=a", "optimizer=adam"])
    msg = str(exc.value)
    assert "optimizer" in msg
    assert "'adamw'" in msg and "'sgd'" in msg
    assert "'adam' (str)" in msg


def test_enum_by_value_or_name_and_bad_value() -> None:
    assert from_dict(ModelConfig, {"act": "relu"}).act is Activation.RELU
    assert from_dict(ModelConfig, {"act": "RELU"}).act is Activation.RELU
    with pytest.raises(ConfigError, match=r"act: expected Activation \(one of 'gelu', 'relu'\), got 'tanh'"):
        from_dict(ModelConfig, {"act": "tanh"})


def test_missing_required_field() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, overrides=["lr=0.1"])
    msg = str(exc.value)
    assert "missing required key(s) for TrainConfig" in msg
    assert msg.endswith(": name")


def test_validate_error_is_wrapped_with_context(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[model]\nn_embd = 64\n')
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, path, ["model.n_head=3"])
    msg = str(exc.value)
    assert msg.startswith(f"{path}: model: invalid ModelConfig:")
    assert "n_embd (64) must be divisible by n_head (3)" in msg
    assert isinstance(exc.value.__cause__, ValueError)
    assert not isinstance(exc.value.__cause__, ConfigError)


def test_from_dict_where_prefix_and_validate() -> None:
    with pytest.raises(ConfigError, match=r"^defaults: invalid ModelConfig: n_embd \(10\)"):
        from_dict(ModelConfig, {"n_embd": 10, "n_head": 4}, where="defaults")
    cfg = from_dict(TrainConfig, {"name": "x", "model": {"n_head": 4}, "betas": [1, 2]})
    assert cfg.model == ModelConfig(n_head=4)
    assert cfg.betas == (1.0, 2.0)


def test_malformed_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\nlr = \n', name="broken.toml")
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "invalid TOML" in msg
    assert "line 2" in msg  # tomllib's own message is kept


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="config file not found") as exc:
        load_config(TrainConfig, path)
    assert str(path) in str(exc.value)


def test_dump_toml_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(
        name='tricky "name" \\ with\nnewline\tand ünïcode',
        model=ModelConfig(n_layer=5, n_head=4, n_embd=32, act=Activation.RELU),
        optimizer="sgd",
        lr=3e-4,
        compile=True,
        seed=None,
        eval_iters=[],
        betas=(0.9, 1e-8),
        out_dir=Path("runs/a b"),
        tags={"data set": "web", "x": "1"},
    )
    text = dump_toml(cfg)
    assert "seed" not in text and "note" not in text  # None values are omitted
    assert "[model]" in text
    loaded = load_config(TrainConfig, write(tmp_path, text))
    assert loaded == cfg
    assert isinstance(loaded.out_dir, Path) and loaded.model.act is Activation.RELU


def test_to_dict_is_plain() -> None:
    d = to_dict(TrainConfig(name="a", out_dir=Path("o")))
    assert d["out_dir"] == "o"
    assert d["betas"] == [0.9, 0.95]
    assert d["model"] == {"n_layer": 2, "n_head": 2, "n_embd": 64, "act": "gelu"}
    assert d["seed"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b=3e-4", ("a.b", 3e-4)),
        ("n=12", ("n", 12)),
        ("flag=true", ("flag", True)),
        ('s="quoted value"', ("s", "quoted value")),
        ("xs=[1, 2]", ("xs", [1, 2])),
        ("name=gpt2", ("name", "gpt2")),
        ("out_dir=runs/x", ("out_dir", "runs/x")),
        ("x=None", ("x", None)),
        ("x=null", ("x", None)),
        ("expr=a=b", ("expr", "a=b")),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_override_values(text: str, expected: tuple[str, object]) -> None:
    key, value = parse_override(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["model.n_layer", "", "=3", "a..b=1"])
def test_parse_override_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_override(text)
    assert repr(text) in str(exc.value)


def test_apply_overrides_creates_tables_without_mutating() -> None:
    data = {"model": {"n_layer": 2}, "lr": 0.1}
    out = apply_overrides(data, ["model.n_head=4", "optim.betas=[0.9, 0.95]", "lr=0.2"])
    assert out == {"model": {"n_layer": 2, "n_head": 4}, "lr": 0.2, "optim": {"betas": [0.9, 0.95]}}
    assert data == {"model": {"n_layer": 2}, "lr": 0.1}

    with pytest.raises(ConfigError, match=r"'lr' is 0\.1, not a table"):
        apply_overrides(data, ["lr.x=1"])
