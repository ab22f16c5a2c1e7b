"""Shared test helpers."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"


def run_cli(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m gmmn ARGS`` against this checkout's sources, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", "gmmn", *args],
        capture_output=True, text=True, cwd=cwd, env=cli_env(), timeout=timeout,
    )


def cli_env() -> dict[str, str]:
    """This process's environment with this checkout's sources first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def cli():
    return run_cli


def one_line_error(capsys, *words: str) -> str:
    """The one line of stderr besides the stages' start and end lines (gmmn.progress):
    no traceback, every one of ``words`` in it."""
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines()
             if not ln.startswith("gmmn: stage ")]
    err = "\n".join(lines)
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err
