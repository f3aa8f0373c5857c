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
}


def _build_parser(only: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qesim",
        description="NPU performance simulator for quantized (vision-)language models (Quant Experts).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, mod in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=f"(see qesim {name} --help)")
            continue
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside the module: surface it
                raise
            sub.add_parser(name, help="(not available in this build)")
            continue
        module.register(sub)
    return parser


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
        extra = {"torch": "quant", "transformers": "quant", "sklearn": "quant", "scipy": "quant",
                 "gguf": "quant", "pyarrow": "dse", "moocore": "dse", "dask": "dse", "distributed": "dse", "tqdm": "dse"}
        root = (e.name or "").split(".")[0]
        hint = f"pip install -e '.[{extra[root]}]'" if root in extra else "bash scripts/setup.sh"
        print(f"qesim: error: command {first!r} needs the Python package {root!r}, which is not "
              f"installed; install it with: {hint}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"qesim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `qesim estimate ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("qesim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
