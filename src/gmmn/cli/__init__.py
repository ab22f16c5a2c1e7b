"""The ``gmmn`` command line.

Each subcommand lives in its own module with ``register(subparsers)``; the module's handler
gets the parsed arguments and returns an exit code. User errors (:class:`gmmn.errors.GMMNError`
and :class:`gmmn.mmd.MMDError`) are printed in one line with exit code 2; ``--debug`` shows the
traceback. A bad flag is one line with exit code 2 too (:class:`Parser`). Training stopped by a
signal exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM) after its
checkpoint; running out of memory is one line too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import textwrap
from collections.abc import Sequence

# Nothing here imports torch (gmmn.errors does not): main() must set OMP_WAIT_POLICY first.
from gmmn import __version__
from gmmn.cli.text import plain, show_default
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

class HelpFormatter(argparse.HelpFormatter):
    """Descriptions keep their paragraphs (module docstrings serve as descriptions), each one
    refilled; every option with a default that says something (not None, not a store_true's
    False) shows it."""

    # Lines break at spaces only: flags, preset names and paths (mnist-gmmn-ae) stay whole.
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = re.split(r"\n\s*\n", text.strip())
        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent,
                                         subsequent_indent=indent, break_on_hyphens=False)
                             for p in paragraphs)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "(default" in text or "%(default)" in text
                or default is None or default is False or default is argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        # The help is %-formatted later: a literal % in the value must be doubled.
        return f"{text} (default: {show_default(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """The parser of ``gmmn`` and of every subcommand (``add_subparsers`` makes its own kind):
    plain-text help and one-line errors."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if kwargs.get("description"):  # before the formatter fills it to the terminal's width
            kwargs["description"] = plain(kwargs["description"])
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        return plain(super().format_help())  # the options' help too

    def error(self, message: str):
        # argparse prints the whole usage (45 lines for `gmmn train`) above its error; the
        # message names the flag and the value, and --help is one command away.
        what = "commands" if self._subparsers is not None else "flags"
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the {what})\n")

    def parse_args(self, args=None, namespace=None):
        # An unknown flag after a subcommand reaches the top-level parser; report it under the
        # subcommand that was given it, whose --help lists the flags it takes.
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            _chosen(self, parsed).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The innermost (sub)parser that ``args`` went through, e.g. the one of `gmmn data info`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices.get(getattr(args, action.dest, None))
            if sub is not None:
                return _chosen(sub, args)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gmmn",
        description="Generative moment matching networks: training, sampling, evaluation, MMD.",
    )
    parser.add_argument("--version", action="version", version=f"gmmn {__version__}",
                        help="print gmmn's version and exit")
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
    argv = sys.argv[1:] if argv is None else list(argv)
    if _asks_version(argv):  # answered before the subcommands (and torch) are imported
        print(f"gmmn {__version__}")
        return 0
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


def _asks_version(argv: list[str]) -> bool:
    """``--version`` among the options before the subcommand (`gmmn -v --version`)."""
    for arg in argv:
        if arg == "--version":
            return True
        if not arg.startswith("-"):
            return False
    return False


def _out_of_memory(exc: BaseException) -> bool:
    """torch's CPU and CUDA allocators raise RuntimeError subclasses with these words."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or \
        "can't allocate memory" in text or "not enough memory" in text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
