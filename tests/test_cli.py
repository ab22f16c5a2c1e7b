import pytest

from gmmn.cli import build_parser, main


def test_unknown_command_exits_with_usage_error():
    parser = build_parser()
    try:
        parser.parse_args(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:  # pragma: no cover
        raise AssertionError("argparse accepted an unknown command")


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
