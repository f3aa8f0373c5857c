"""The ``qesim`` command.

Each sub-command lives in a module under ``qesim/commands/`` exposing ``register(subparsers)``;
the module adds its parser and sets ``func`` (``args -> int exit status``). Modules are imported
lazily only for the command being run, so ``qesim estimate`` never imports torch.

Errors: :class:`qesim.errors.InputError` (bad user input) prints one line and exits 2;
argparse usage errors also exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

from qesim.errors import InputError

#: command name -> module that implements it. Add a line to add a command.
COMMANDS: dict[str, str] = {
    "estimate": "qesim.commands.estimate",
    "reproduce": "qesim.commands.reproduce",
    "validate": "qesim.commands.validate",
    "graph": "qesim.commands.graph",
    "hw": "qesim.commands.hw",
    "accuracy": "qesim.commands.accuracy",
    "quantize": "qesim.commands.quantize",
    "compare-engines": "qesim.commands.compare_engines",
    "inference": "qesim.commands.inference",
    "sweep": "qesim.commands.sweep",
    "report": "qesim.commands.report",
    "moqe": "qesim.commands.moqe",
    "moe": "qesim.commands.moe",
    "calibrate": "qesim.commands.calibrate",
    "fidelity": "qesim.commands.fidelity",
    "explore": "qesim.commands.explore",
    "energy": "qesim.commands.energy",
}


#: optional dependencies: (command, sub-command or None) -> (extra, modules it imports). Checked
#: (without importing anything) before a command runs, so a missing extra is one line, before
#: any output is written; ``--help`` marks these commands.
NEEDS: dict[tuple[str, "str | None"], tuple[str, tuple[str, ...]]] = {
    ("accuracy", None): ("quant", ("torch", "transformers")),
    ("quantize", None): ("quant", ("torch", "transformers")),
    ("moqe", None): ("quant", ("torch", "transformers")),
    ("moe", "veq"): ("quant", ("torch",)),
    ("calibrate", None): ("quant", ("scipy",)),
    ("fidelity", None): ("quant", ("scipy",)),
    ("sweep", None): ("dse", ("pyarrow", "tqdm", "moocore")),
}
#: top-level module of a dependency -> the extra that installs it
EXTRA_OF = {"torch": "quant", "transformers": "quant", "sklearn": "quant", "scipy": "quant", "gguf": "quant",
            "accelerate": "quant", "pyarrow": "dse", "moocore": "dse", "dask": "dse", "distributed": "dse", "tqdm": "dse",
            "nbclient": "dev", "nbformat": "dev", "pytest": "dev", "hypothesis": "dev"}


def _install_hint(extra: str) -> str:
    """``pip install 'qesim[X]'`` for an installed qesim, ``pip install -e '.[X]'`` in a source tree."""
    from pathlib import Path

    src_tree = (Path(__file__).resolve().parents[1] / "pyproject.toml").exists()
    return f"pip install -e '.[{extra}]'" if src_tree else f"pip install 'qesim[{extra}]'"


def _needs_note(extra: str) -> str:
    return f" [needs the '{extra}' extra]"


def _mark_extras(sub, name: str) -> None:
    """Append the extra a command (or one of its sub-commands) needs to its ``--help`` line."""
    for (cmd, subcmd), (extra, _) in NEEDS.items():
        if cmd != name:
            continue
        if subcmd is None:
            for act in sub._choices_actions:
                if act.dest == name:
                    act.help = (act.help or "") + _needs_note(extra)
            continue
        parser = sub.choices.get(name)
        for action in getattr(parser, "_actions", []):
            if isinstance(action, argparse._SubParsersAction):
                for act in action._choices_actions:
                    if act.dest == subcmd:
                        act.help = (act.help or "") + _needs_note(extra)
        top = [a for a in sub._choices_actions if a.dest == name]
        for act in top:
            act.help = (act.help or "") + f" [{subcmd}: needs the '{extra}' extra]"


def _int_arg(text: str) -> int:
    """An integer argument; '1e6' / '2.0' are accepted when they are whole numbers."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        x = float(text)
    except ValueError:
        raise ValueError(text) from None
    if not math.isfinite(x) or not x.is_integer():
        raise ValueError(text)
    return int(x)


_int_arg.__name__ = "int"


def _float_arg(text: str) -> float:
    """A finite float argument (nan / inf are refused)."""
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(text)
    return x


_float_arg.__name__ = "finite float"


class QesimParser(argparse.ArgumentParser):
    """argparse with one-line errors (``qesim CMD: error: ... (see qesim CMD --help)``), integer
    arguments that accept ``1e6``, and float arguments that refuse nan/inf."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.register("type", int, _int_arg)
        self.register("type", float, _float_arg)

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser(only: str | None) -> argparse.ArgumentParser:
    parser = QesimParser(
        prog="qesim",
        description="NPU performance simulator for quantized (vision-)language models (Quant Experts).",
        epilog="Commands marked [needs the 'X' extra] import optional packages: pip install 'qesim[X]' "
        "(quant: torch side; dse: Parquet, Dask, progress bars; all: everything).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, mod in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=f"(see qesim {name} --help)")
            _mark_extras(sub, name)
            continue
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside the module: surface it
                raise
            sub.add_parser(name, help="(not available in this build)")
            continue
        module.register(sub)
        _mark_extras(sub, name)
    return parser


def _missing(args: argparse.Namespace) -> "tuple[str, list[str]] | None":
    """(extra, missing modules) if the command about to run needs an extra that is not installed."""
    import importlib.util

    cmd = getattr(args, "command", None)
    subs = [v for k, v in vars(args).items() if k.endswith("_cmd") and isinstance(v, str)]
    for key in [(cmd, None)] + [(cmd, s) for s in subs]:
        if key in NEEDS:
            extra, mods = NEEDS[key]
            miss = [m for m in mods if importlib.util.find_spec(m) is None]
            if miss:
                return extra, miss
    return None


def _extra_error(what: str, extra: str, missing: list[str]) -> str:
    return (f"qesim: error: {what} needs the '{extra}' extra (missing: {', '.join(missing)}); "
            f"install it with: {_install_hint(extra)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS:
        only = first  # import just this command's module
    elif not argv or argv[0] in ("-h", "--help"):
        only = None  # full help: every command registers
    else:
        only = "__none__"  # unknown command: argparse lists the choices
    try:
        parser = _build_parser(only)
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root in EXTRA_OF:
            print(_extra_error(f"'qesim {first}'", EXTRA_OF[root], [root]), file=sys.stderr)
        else:
            print(f"qesim: error: command {first!r} needs the Python package {root!r}, which is not "
                  f"installed; install it with: bash scripts/setup.sh", file=sys.stderr)
        return 2
    from qesim.progress import set_argv

    set_argv(argv)  # reports record the command actually run
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a usage error (one line, see QesimParser.error) is an exit status
        if not e.code:
            raise  # --help
        return int(e.code)
    miss = _missing(args)
    if miss is not None:
        words = " ".join(str(v) for v in [args.command] + [v for k, v in vars(args).items()
                                                            if k.endswith("_cmd") and isinstance(v, str)])
        print(_extra_error(f"'qesim {words}'", *miss), file=sys.stderr)
        return 2
    import warnings

    # numpy's floating-point warnings would print extra stderr lines before the one error line: a
    # result that is not finite is refused by name (safeio.dumps_finite, the estimate's checks)
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"(invalid value|overflow|divide by zero|underflow) encountered")
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"qesim: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional package NEEDS does not list: still one line
        root = (e.name or "").split(".")[0]
        if root not in EXTRA_OF:
            raise
        print(_extra_error(f"'qesim {args.command}'", EXTRA_OF[root], [root]), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `qesim estimate ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("qesim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
