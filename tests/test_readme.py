"""The README's own code, run as written, so that it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_env

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _line(prefix: str) -> str:
    """The README line that starts with ``prefix``, without its comment."""
    for block in _blocks("bash"):
        for line in block.splitlines():
            if line.startswith(prefix):
                return line.split("#")[0].strip()
    raise AssertionError(f"the README has no line starting {prefix!r}")


def test_the_readme_has_the_blocks_these_tests_run():
    assert len(_blocks("python")) >= 1
    assert _line("gmmn train --dataset my_data.npy") == \
        "gmmn train --dataset my_data.npy --out runs/mine"


@pytest.mark.slow  # trains GMMN() on wine at its defaults: about a minute
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block_runs_as_written(tmp_path, index):
    code = _blocks("python")[index]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow  # the own-data lines at their defaults: about a minute of training
def test_readme_own_data_lines_run_as_written(tmp_path):
    from sklearn.datasets import load_diabetes

    # A small real table the defaults were not tuned on the file of: diabetes's 442 rows.
    np.save(tmp_path / "my_data.npy", load_diabetes().data)
    for prefix in ("gmmn train --dataset my_data.npy", "gmmn evaluate --run runs/mine",
                   "gmmn sample --run runs/mine"):
        args = _line(prefix).split()[1:]
        done = subprocess.run([sys.executable, "-m", "gmmn", *args], cwd=tmp_path,
                              env=cli_env(), capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (prefix, done.stderr[-3000:])
    samples = np.loadtxt(tmp_path / "samples.csv", delimiter=",", ndmin=2)
    data = load_diabetes().data
    assert samples.shape == (1000, data.shape[1])
    # in the data's units (diabetes's columns have sd 0.048), not in z-scores
    assert np.median(samples.std(0) / data.std(0)) == pytest.approx(1.0, abs=0.25)
