"""CLI sub-commands, one module each (see qesim/cli.py)."""
