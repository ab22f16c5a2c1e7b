"""The ``gmmn`` command line.

Each subcommand lives in its own module with ``register(subparsers)``; the module's handler
gets the parsed arguments and returns an exit code. User errors (:class:`gmmn.errors.GMMNError`
and :class:`gmmn.mmd.MMDError`) are printed in one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gmmn.errors import GMMNError
from gmmn.mmd import MMDError

# Subcommand modules, in the order `gmmn --help` lists them.
_COMMANDS: tuple[str, ...] = (
    "gmmn.cli.train",
    "gmmn.cli.sample",
    "gmmn.cli.evaluate",
    "gmmn.cli.reproduce",
    "gmmn.cli.data",
    "gmmn.cli.mmd_test",
)

USER_ERRORS = (GMMNError, MMDError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmmn",
        description="Generative moment matching networks: training, sampling, evaluation, MMD.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--verbose", "-v", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"gmmn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gmmn {args.command}: interrupted", file=sys.stderr)
        return 130
