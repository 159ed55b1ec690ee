"""`kiln <stage> ...`: one command line for every stage.

The commands are the table in `kiln.stages` (name -> config class, run function); the grammar (`CONFIG.toml`,
`key=value`, `--key value`, bare arguments) and `--help` come from the config dataclass (`kiln.command`). This
module only finds the command, runs it, prints its summary, and is the one error boundary: a user's mistake (a
bad value, a missing file, no Ray cluster) prints one line naming it and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kiln import __version__
from kiln.stages import STAGES, Spec
from kiln.utils.suggest import did_you_mean


def usage() -> str:
    width = max(len(name) for name in STAGES)
    rows = "\n".join(f"  {name:<{width}}  {spec.help}" for name, spec in STAGES.items())
    return (
        "usage: kiln <stage> [CONFIG.toml] [ARG ...] [key=value ...] [--key value ...]\n\n"
        "Make a language model from raw web text and play with it.\n\n"
        f"stages:\n{rows}\n\n"
        "`kiln <stage> --help` lists every setting with its default; --debug shows tracebacks; --version."
    )


def find_stage(argv: Sequence[str]) -> tuple[Spec, list[str]]:
    """The command named by the first one or two words of `argv`, and the arguments after it."""
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in STAGES:
        return STAGES[f"{argv[0]} {argv[1]}"], list(argv[2:])
    if argv[0] in STAGES:
        return STAGES[argv[0]], list(argv[1:])
    group = [name for name in STAGES if name.startswith(argv[0] + " ")]
    if group:
        actions = ", ".join(name.split(" ", 1)[1] for name in group)
        wanted = f" {argv[1]!r}" if len(argv) > 1 and not argv[1].startswith("-") else ""
        raise SystemExit(_usage_error(f"kiln {argv[0]}: unknown action{wanted}; choose one of: {actions}"))
    words = sorted({name.split(" ")[0] for name in STAGES})
    hint = did_you_mean(argv[0], words) or f"; choose one of: {', '.join(words)}"
    raise SystemExit(_usage_error(f"kiln: unknown stage {argv[0]!r}{hint}"))


def _usage_error(message: str) -> int:
    print(usage().split("\n\n")[0] + "\n" + message, file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if not args:
        raise SystemExit(_usage_error("kiln: give a stage, e.g. kiln quickstart (kiln --help lists them)"))
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"kiln {__version__}")
        return 0
    spec, rest = find_stage(args)
    options = rest[: rest.index("--")] if "--" in rest else rest
    if "-h" in options or "--help" in options:
        from kiln.command import help_text

        print(help_text(spec))
        return 0
    try:
        return _run(spec, rest)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as e:
        if debug or (isinstance(e, ImportError) and e.name != "ray"):
            raise  # a broken install of a dependency keeps its traceback; only a missing optional Ray is the user's
        print(f"kiln {spec.name}: error: {_message(e)}", file=sys.stderr)
        return 2


def _message(e: BaseException) -> str:
    """One line for the user. Filesystem errors name the path and what is wrong with it (an --out that is a file,
    a read-only directory), which is what the user can fix; everything else says what it says."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        return f"{where}: {e.strerror.lower()}"
    return str(e)


def _run(spec: Spec, argv: list[str]) -> int:
    from kiln.command import parse

    config = parse(spec, argv)
    summary = spec.run_function()(config)
    text = summary.render()
    if text:  # a stage that ends in failure (e.g. training diverged) says why on stderr
        print(text, file=sys.stderr if summary.exit_code else sys.stdout)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
