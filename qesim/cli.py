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
        importlib.import_module(mod).register(sub)
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
    parser = _build_parser(only)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"qesim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qesim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
