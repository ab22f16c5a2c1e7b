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


def config_with(**flat):
    """A config of the first model family that has every setting named in ``flat`` (flag
    names), the others at their defaults: how a test checks one setting's validation."""
    from gmmn.config import TrainConfig
    from gmmn.families import FAMILIES, make_config
    from gmmn.sampling import SamplingConfig

    names = set(flat) - set(TrainConfig.run_names()) - set(SamplingConfig.names())
    for name, family in FAMILIES.items():
        if names <= set(family.settings.names()):
            return make_config(name, **flat)
    raise AssertionError(f"no family has all of {sorted(names)}")


def all_settings() -> dict:
    """Every setting's name -> (type hint, bounds), over the run's, the sampling's and every
    family's dataclass."""
    from gmmn.families import setting_classes

    out = {}
    for cls in setting_classes().values():
        hints = cls.hints()
        for f in __import__("dataclasses").fields(cls):
            if f.name not in ("family", "model", "sampling"):
                out.setdefault(f.name, (hints[f.name], f.metadata.get("bounds")))
    return out
