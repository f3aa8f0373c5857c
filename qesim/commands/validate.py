"""``qesim validate FILE...``: check layer graphs (.json), hardware configs (.yaml) and sweep spaces.

A sweep space (a .yaml with a top-level ``space:``) is valid exactly when ``qesim sweep`` can run
it: besides the file's fields, every workload graph is built and costed on one point of every
combination of structural and listed buffer-size values, as the sweep does before it writes anything.

Exit 0 if every file is valid; otherwise one error line per bad file and exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qesim.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("validate", help="validate layer graphs (.json) and hardware configs (.yaml)",
                       description=__doc__)
    p.add_argument("files", nargs="+", help="graph .json or hardware .yaml files")
    p.set_defaults(func=run)


def validate_file(path: str) -> str:
    """A one-line description of the valid file; raises InputError otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.suffix == ".json":
        from qesim.graph.ir import LayerGraph

        g = LayerGraph.from_json(p)
        return f"{p}: valid layer graph '{g.name}' ({len(g.ops)} ops, {g.stage}, {g.setting}, method {g.method})"
    if p.suffix in (".yaml", ".yml"):
        from qesim.hw.loader import config_from_dict, load_yaml

        data = load_yaml(p)
        if "space" in data or "sweep" in data:
            try:
                from qesim.dse.runner import check_space
                from qesim.dse.space import load_space
            except ModuleNotFoundError:
                raise InputError(f"{p}: looks like a sweep space, but sweeps are not available in this build") from None
            sp = load_space(p)
            groups = check_space(sp)
            return (f"{p}: valid sweep space '{sp.name}' ({len(sp)} points: {len(sp.workloads)} workloads x "
                    f"{sp.n_hw_points()} hardware points; {groups} points costed as the sweep does)")
        hw = config_from_dict(data, str(p))
        return f"{p}: valid hardware config '{hw.name}'"
    raise InputError(f"{p}: unknown file type {p.suffix!r}; expected .json (layer graph) or .yaml/.yml (hardware config)")


def run(args: argparse.Namespace) -> int:
    bad = 0
    for f in args.files:
        try:
            print(validate_file(f))
        except InputError as e:
            import sys

            print(f"qesim: error: {e}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0
