"""The numbers the subcommands' options take (seconds, counts, bytes, a port), read and bounded in one
place: `add_number` declares such an option with the range it must lie in, `add_seconds` a duration."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeVar

# The longest a single wait may be (a timeout, a lease, a backoff, a token's leeway): past a day it
# is a mistyped value, and one far past it never ends or does not fit a deadline.
MAX_WAIT_SECONDS = 24 * 3600
# The longest period an option may give (how long something is retried, kept, remembered or valid):
# ten years; 1e300 seconds is not a timedelta at all.
MAX_PERIOD_SECONDS = 10 * 365 * 24 * 3600

N = TypeVar("N", int, float)


def add_number(
    parser: argparse.ArgumentParser,
    option: str,
    kind: type[N],
    *,
    least: N,
    most: N,
    above: bool = False,
    unit: str = "",
    **kwargs: Any,
) -> None:
    """Adds `option` to `parser` (the other `add_argument` arguments in `kwargs`), read as `kind` (int
    or float): the value must lie from `least` (excluded when `above`) to `most`, and be finite. Any
    other text, NaN and the infinities among it, ends the command with one line (exit status 1) saying
    what the option takes, in `unit` (e.g. "seconds"), like every other option a subcommand refuses.
    A string default (from the environment) is read and checked the same way."""
    words = f" {unit}" if unit else ""
    lower = f"more than {_shown(least)}{words}" if above else f"at least {_shown(least)}{words}"
    rule = f"{option} must be {lower} and at most {_shown(most)}{words}"

    def read(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:  # not a number of that kind (or an int of more digits than Python reads)
            sys.exit(f"{rule}, not {text!r}")
        # Written so that NaN, which compares false with everything, fails too.
        if not ((value > least if above else value >= least) and value <= most):
            sys.exit(f"{rule}, not {text!r}")
        return value

    parser.add_argument(option, type=read, **kwargs)


def add_seconds(
    parser: argparse.ArgumentParser,
    option: str,
    *,
    above: bool = True,
    most: float = MAX_WAIT_SECONDS,
    **kwargs: Any,
) -> None:
    """`add_number` for a duration in seconds (a float): more than 0, or 0 or more when not `above`;
    at most `most`, a single wait's bound unless given."""
    add_number(parser, option, float, least=0.0, most=float(most), above=above, unit="seconds", **kwargs)


def _shown(bound: float) -> str:
    """`bound` as a person types it: 86400, not 86400.0 or 8.64e+04."""
    return str(int(bound)) if bound == int(bound) else str(bound)
