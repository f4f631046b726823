"""Argument types and checks of the command line: every flag is parsed and validated
before any computation, and a bad one ends the command with one line on stderr and
exit status 2 (no usage block, no traceback).

Each ``*_type`` function is an ``argparse`` ``type=``: it turns the string into the
value or raises ``argparse.ArgumentTypeError`` with a message that says what is
expected.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import tempfile

__all__ = ["Parser", "int_type", "float_type", "float_list_type", "name_list_type", "devices_type",
           "output_dir_type", "show_progress"]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message``, exit 2.

    Sub-command parsers inherit the class (``add_subparsers`` builds them with it).
    """

    def error(self, message: str):
        line = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def int_type(minimum: int | None = None, maximum: int | None = None, what: str = "an integer"):
    """An integer within ``[minimum, maximum]`` (either bound may be ``None``)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        _check_range(value, text, minimum, maximum, what, inclusive_low=True)
        return value

    parse.__name__ = "integer"
    return parse


def float_type(minimum: float | None = None, maximum: float | None = None, *, inclusive_low: bool = True,
               what: str = "a number"):
    """A finite float within the bounds (the lower one strict unless ``inclusive_low``)."""

    def parse(text: str) -> float:
        value = _finite_float(text, what)
        _check_range(value, text, minimum, maximum, what, inclusive_low=inclusive_low)
        return value

    parse.__name__ = "number"
    return parse


def float_list_type(minimum: float | None = None, maximum: float | None = None, *, inclusive_low: bool = True,
                    what: str = "numbers", hint: str = ""):
    """A comma-separated, non-empty list of finite floats within the bounds."""

    def parse(text: str) -> list[float]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} such as 0.5,1,2; got {text!r}")
        values = []
        for p in parts:
            value = _finite_float(p, what)
            _check_range(value, p, minimum, maximum, what, inclusive_low=inclusive_low, hint=hint)
            values.append(value)
        return values

    parse.__name__ = "list"
    return parse


def name_list_type(choices, what: str = "names"):
    """A comma-separated, non-empty list of distinct names taken from ``choices``."""
    choices = tuple(choices)

    def parse(text: str) -> list[str]:
        names = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not n for n in names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what} from "
                                             f"{','.join(choices)}; got {text!r}")
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, unknown))}; "
                                             f"choose from {','.join(choices)}")
        if len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"each of the {what} may appear once; got {text!r}")
        return names

    parse.__name__ = "list"
    return parse


def devices_type(text: str):
    """``all`` or a positive device count."""
    s = text.strip().lower()
    if s == "all":
        return "all"
    try:
        n = int(s)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive number of devices, got {text!r}")
    return n


def output_dir_type(text: str) -> pathlib.Path:
    """A directory that exists (created here, with its parents) and can be written to."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty name")
    path = pathlib.Path(text).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise argparse.ArgumentTypeError(f"cannot write to the directory {text!r}: {reason}") from None
    return path


def show_progress(no_progress: bool) -> bool:
    """Progress bars only for a person watching: not with ``--no-progress``, and not when
    stderr is a file or a pipe (where a bar is noise)."""
    return not no_progress and sys.stderr.isatty()


def _finite_float(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected finite {what}, got {text!r}")
    return value


def _check_range(value, text, minimum, maximum, what, *, inclusive_low: bool, hint: str = "") -> None:
    low_ok = minimum is None or (value >= minimum if inclusive_low else value > minimum)
    high_ok = maximum is None or value <= maximum
    if low_ok and high_ok:
        return
    low = f"{'of at least' if inclusive_low else 'above'} {minimum:g}" if minimum is not None else ""
    high = f"at most {maximum:g}" if maximum is not None else ""
    rng = " and ".join(r for r in (low, high) if r)
    raise argparse.ArgumentTypeError(f"expected {what} {rng}{hint}, got {text.strip()!r}")
