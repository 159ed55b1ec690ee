"""The stage contract: every kiln stage is a typed config dataclass, `run(config) -> Summary`, and one CLI command.

Why one contract: a learner who has run one stage knows how to run, configure and script every other one; the
CLI, the quickstart and tests all drive stages the same way (build a config, call `run`), and every run leaves
behind the exact config it ran with, so it can be repeated (`kiln <stage> <out>/kiln-<stage>.toml`).

A stage module provides:
- a config dataclass whose every field has a docstring under it (shown by `kiln <stage> --help`, checked by a
  test) and whose `validate()` raises ValueError naming the bad field;
- `run(config) -> Summary`: does the work, writes its outputs and `write_resolved_config(...)` beside them;
- a `Summary` dataclass that renders itself for the terminal and writes itself as JSON.

`kiln.cli.STAGES` is the table of stage name -> (config class, run function), by import path so that
`kiln --help` loads no stage's dependencies.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

from kiln.config import dump_toml, to_dict
from kiln.utils.io import atomic_write_text


@dataclasses.dataclass
class Summary:
    """What a stage run did. Subclasses are dataclasses of plain values (numbers, strings, paths, lists, dicts)
    and implement `render()`; `to_json()` and `write()` come for free."""

    # A stage that ends on purpose without finishing (e.g. training stopped by a signal) sets a non-zero code.
    exit_code: ClassVar[int] = 0

    def render(self) -> str:
        """The lines a person reads in the terminal when the stage ends."""
        raise NotImplementedError(f"{type(self).__name__} must implement render()")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready values (paths as strings, tuples as lists)."""
        return to_dict(self)

    def write(self, path: str | Path) -> Path:
        """Write the summary as JSON, atomically (a killed run never leaves half a file)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, ensure_ascii=False, default=str) + "\n")
        return path


def config_file_name(stage: str) -> str:
    """`kiln-<stage>.toml`: the resolved config a run of `stage` writes beside its output ("tokenizer train" ->
    kiln-tokenizer-train.toml). Not a corpus suffix, so `kiln tokenize <dir>` never reads it as text."""
    return f"kiln-{stage.replace(' ', '-')}.toml"


def write_resolved_config(config: Any, out_dir: str | Path, stage: str) -> Path:
    """Write `config` (a dataclass) as TOML into `out_dir`: the exact settings this run used, defaults included,
    so `kiln <stage> <that file>` repeats it and a reader sees every value without reading the code."""
    path = Path(out_dir) / config_file_name(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f"# kiln {stage}: the resolved config of this run\n" + dump_toml(config))
    return path


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right under it in the class body), for `--help`.

    Python keeps no attribute docstrings at run time, so they are read from the source with `ast`; base
    dataclasses contribute theirs first. A field without one maps to "".
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        stmts = body.body
        for i, stmt in enumerate(stmts):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                nxt = stmts[i + 1] if i + 1 < len(stmts) else None
                text = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) else None
                docs[stmt.target.id] = inspect.cleandoc(text) if isinstance(text, str) else ""
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls) if f.init}
