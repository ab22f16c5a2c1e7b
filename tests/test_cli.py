from gmmn.cli import build_parser


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
