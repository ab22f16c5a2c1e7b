import argparse
import contextlib
import logging
import os
import subprocess
import sys

import pytest

from conftest import cli_env
from gmmn.cli import build_parser, main


def test_unknown_command_exits_with_usage_error():
    parser = build_parser()
    try:
        parser.parse_args(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:  # pragma: no cover
        raise AssertionError("argparse accepted an unknown command")


@pytest.mark.slow
def test_python_m_gmmn_help_runs(cli):
    out = cli("--help")
    assert out.returncode == 0, out.stderr
    assert "usage: gmmn" in out.stdout


def test_debug_flag_is_accepted_after_nested_subcommands(tmp_path):
    from gmmn.errors import DataError

    missing = str(tmp_path / "missing.npy")
    assert main(["data", "info", missing]) == 2  # one line, no traceback
    for argv in (["data", "info", missing, "--debug"], ["--debug", "data", "info", missing]):
        with pytest.raises(DataError):
            main(argv)


def test_main_waits_passively_unless_the_user_chose_a_wait_policy(monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.slow
def test_importing_the_cli_neither_loads_torch_nor_touches_the_environment():
    # OpenMP reads its wait policy when torch loads it: main() can only set it first if
    # importing the CLI has not loaded torch already.
    code = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); import gmmn.cli; "
            "assert 'torch' not in sys.modules, 'torch loaded'; "
            "assert 'OMP_WAIT_POLICY' not in os.environ, 'policy set at import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(), timeout=120)
    assert out.returncode == 0, out.stderr


def test_a_worker_quietens_only_the_gmmn_logger_and_only_during_its_run(monkeypatch, tmp_path):
    import gmmn.training.distributed as distributed
    from gmmn.cli import train as cli_train

    seen = {}

    def from_main(fn):
        seen["gmmn"], seen["root"] = logging.getLogger("gmmn").level, logging.getLogger().level
        raise RuntimeError("stop the run here")

    @contextlib.contextmanager
    def launch():
        from gmmn.training.loop import Hooks

        yield Hooks(main=False, from_main=from_main)  # a worker, not rank 0

    monkeypatch.setattr(distributed, "launch", launch)
    gmmn_log, root = logging.getLogger("gmmn"), logging.getLogger()
    before = gmmn_log.level, root.level
    with pytest.raises(RuntimeError, match="stop the run"):
        cli_train.run(argparse.Namespace(out=str(tmp_path), preset="digits-gmmn"))
    assert seen == {"gmmn": logging.ERROR, "root": before[1]}
    assert (gmmn_log.level, root.level) == before
