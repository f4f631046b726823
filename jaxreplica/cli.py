"""The ``jaxreplica`` command line: one sub-command per ``jaxreplica/_cmd_<name>.py``.

Each sub-command module exposes ``HELP`` (one line), ``add_arguments(parser)``,
``check_arguments(args, parser)`` (checks that involve several flags) and
``run(args) -> int``: it calls ``experiments/`` or ``training/`` and writes the files.
Every flag is validated before anything is computed: a bad one ends the command with
one line on stderr and exit status 2 (:mod:`jaxreplica._cli_args`). A run whose results
contain non-converged or non-finite values, or whose training loss diverged, exits with
status 1 and says which.
"""

from __future__ import annotations

import difflib
import sys

import jaxreplica._cmd_figure2 as _cmd_figure2
import jaxreplica._cmd_sweep as _cmd_sweep
import jaxreplica._cmd_train as _cmd_train
from jaxreplica._cli_args import Parser

COMMANDS = {"sweep": _cmd_sweep, "figure2": _cmd_figure2, "train": _cmd_train}


def build_parser() -> Parser:
    parser = Parser(
        prog="jaxreplica",
        description="Replica-formula entropies and mutual informations of wide stochastic networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _check=mod.check_arguments, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unrecognized(getattr(args, "_parser", None) or parser, unknown)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    args._check(args, args._parser)
    return int(args._run(args) or 0)


def _unrecognized(parser, unknown: list[str]) -> None:
    """Refuse arguments the command does not take, naming the command (whose ``--help``
    lists its flags) and, where one is close, the flag it takes that comes closest."""
    message = f"unrecognized arguments: {' '.join(unknown)}"
    flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    for word in unknown:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.8)
            if close:
                message += f"; did you mean {close[0]}?"
                break
    parser.error(message)
