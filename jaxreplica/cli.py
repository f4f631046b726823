"""The ``jaxreplica`` command line: one sub-command per ``jaxreplica/_cmd_<name>.py``.

Each sub-command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``: it parses its flags, calls ``experiments/`` or ``training/``, and
writes the files.
"""

from __future__ import annotations

import argparse
import sys

import jaxreplica._cmd_figure2 as _cmd_figure2
import jaxreplica._cmd_sweep as _cmd_sweep
import jaxreplica._cmd_train as _cmd_train

COMMANDS = {"sweep": _cmd_sweep, "figure2": _cmd_figure2, "train": _cmd_train}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="jaxreplica",
        description="Replica-formula entropies and mutual informations of wide stochastic networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args._run(args) or 0)
