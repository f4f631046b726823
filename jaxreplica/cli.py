"""The ``jaxreplica`` command line: one sub-command per module.

Each sub-command lives in ``jaxreplica/_cmd_<name>.py`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily so that ``jaxreplica --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "sweep": "jaxreplica._cmd_sweep",
    "figure2": "jaxreplica._cmd_figure2",
    "train": "jaxreplica._cmd_train",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="jaxreplica",
        description="Replica-formula entropies and mutual informations of wide stochastic networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the module of the chosen command is imported.
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, modname in COMMANDS.items():
        if chosen is not None and name != chosen:
            sub.add_parser(name)
            continue
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as err:  # command not built yet
            if err.name != modname:
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args._run(args) or 0)
