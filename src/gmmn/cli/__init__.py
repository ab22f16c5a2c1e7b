"""The ``gmmn`` command line.

Each subcommand lives in its own module with ``register(subparsers)``; the module's handler
gets the parsed arguments and returns an exit code. User errors (:class:`gmmn.errors.GMMNError`
and :class:`gmmn.mmd.MMDError`) are printed in one line with exit code 2; ``--debug`` shows the
traceback. Training stopped by a signal exits with 128 + the signal's number (130 for SIGINT,
143 for SIGTERM) after its checkpoint; running out of memory is one line too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# Nothing here imports torch (gmmn.errors does not): main() must set OMP_WAIT_POLICY first.
from gmmn.errors import GMMNError, TrainingInterrupted

# Subcommand modules, in the order `gmmn --help` lists them.
_COMMANDS: tuple[str, ...] = (
    "gmmn.cli.train",
    "gmmn.cli.sample",
    "gmmn.cli.evaluate",
    "gmmn.cli.reproduce",
    "gmmn.cli.data",
    "gmmn.cli.mmd_test",
)


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
    # Also accepted after the subcommand (`gmmn train ... --debug`), where users type them;
    # SUPPRESS keeps the value given before the subcommand when the flag is absent here.
    _add_common_flags(sub)
    return parser


def _add_common_flags(sub: argparse._SubParsersAction) -> None:
    for cmd in sub.choices.values():
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks of errors")
        cmd.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                         help="log at INFO level")
        for action in cmd._actions:  # nested actions, e.g. `gmmn data info`
            if isinstance(action, argparse._SubParsersAction):
                _add_common_flags(action)


def main(argv: Sequence[str] | None = None) -> int:
    # Before anything imports torch (the subcommands and gmmn.mmd below do), because OpenMP
    # reads its wait policy once, when torch loads it: idle OpenMP threads that spin (the
    # default) made training up to 9x slower on a 2-core machine shared with other work
    # (0.31 s vs 0.033 s per code-space GMMN step, measured under the same load); waiting
    # passively costs little on a quiet machine. setdefault: a value the user set wins. Set in
    # the process's environment because that is where OpenMP (and torchrun's workers) look.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from gmmn.mmd import MMDError

    user_errors = (GMMNError, MMDError)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except TrainingInterrupted as exc:
        if args.debug:
            raise
        print(f"gmmn {args.command}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except user_errors as exc:
        if args.debug:
            raise
        print(f"gmmn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gmmn {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        if args.debug or not _out_of_memory(exc):
            raise
        print(f"gmmn {args.command}: error: out of memory ({_first_line(exc)}); use smaller "
              f"batch sizes, sample counts or images", file=sys.stderr)
        return 2


def _out_of_memory(exc: BaseException) -> bool:
    """torch's CPU and CUDA allocators raise RuntimeError subclasses with these words."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or \
        "can't allocate memory" in text or "not enough memory" in text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
