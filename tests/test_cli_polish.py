"""The command line's surface: plain help with defaults, --version, one-line flag errors,
``gmmn data info`` without downloads, and the training progress of :mod:`gmmn.progress`."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest
import torch

from conftest import cli_env
from gmmn.cli import build_parser, main, plain, show_default
from gmmn.config import flag as config_flag
from gmmn.errors import ConfigError
from gmmn.progress import TrainingProgress
from gmmn.training.loop import StepInfo


def _parsers(parser: argparse.ArgumentParser):
    """Every parser under ``parser``, nested ones (gmmn data info) included."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _help_lines(capsys, monkeypatch, *argv: str) -> list[str]:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option, so a line holds its default
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out.splitlines()


def _option_line(lines: list[str], flag: str) -> str:
    """The entry of ``flag`` (e.g. "--n N" or "--pcd,"): its line, and the next one where
    argparse puts the help of a long flag."""
    i = next(i for i, line in enumerate(lines) if line.strip().startswith(flag))
    entry = lines[i].strip()
    if i + 1 < len(lines) and lines[i + 1].startswith(" " * 10):
        entry += " " + lines[i + 1].strip()
    return entry


def test_plain_strips_literals_and_roles():
    assert plain("``gmmn train`` uses :class:`gmmn.config.TrainConfig` and :func:`f`") == \
        "gmmn train uses gmmn.config.TrainConfig and f"
    assert plain(":meth:`~gmmn.api.GMMN.fit` and :py:mod:`x`") == "fit and x"


def test_every_help_is_plain_text_and_every_option_has_help():
    prog = [p.prog for p in _parsers(build_parser())]
    assert {"gmmn", "gmmn train", "gmmn data info", "gmmn data import", "gmmn mmd-test"} <= \
        set(prog)
    for parser in _parsers(build_parser()):
        text = parser.format_help()
        for markup in ("``", ":class:", ":func:", ":mod:", ":meth:", ":data:"):
            assert markup not in text, (parser.prog, markup)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, \
                (parser.prog, action.option_strings or action.dest)


def test_help_of_a_nested_command_through_main(capsys, monkeypatch):
    lines = _help_lines(capsys, monkeypatch, "data", "info")
    assert lines[0].startswith("usage: gmmn data info")
    assert _option_line(lines, "--seed SEED").endswith("(default: 0)")
    assert not any("``" in line for line in lines)


@pytest.mark.parametrize("argv, flag, default", [
    (("evaluate",), "--n-samples N_SAMPLES", "10000"),
    (("sample",), "--n N", "100"),
    (("reproduce",), "--seeds S[,S...]", "0"),
    (("mmd-test",), "--permutations PERMUTATIONS", "1000"),
])
def test_defaults_are_shown(capsys, monkeypatch, argv, flag, default):
    lines = _help_lines(capsys, monkeypatch, *argv)
    assert _option_line(lines, flag).endswith(f"(default: {default})")


def _expected(cfg, name: str) -> str:
    value = getattr(cfg, name)
    if isinstance(value, bool):
        return config_flag(name) if value else "--no-" + config_flag(name)[2:]
    if name == "sigmas" and value is None:
        return "median"
    return show_default(value)


def test_train_help_shows_the_values_of_the_preset_on_the_command_line(capsys, monkeypatch):
    from gmmn.presets import get_preset

    cfg = get_preset("digits-gmmn")
    lines = _help_lines(capsys, monkeypatch, "train", "--preset", "digits-gmmn")
    assert _option_line(lines, "--iterations ITERATIONS").endswith("(default: 3000)")
    assert _option_line(lines, "--hidden HIDDEN").endswith("(default: 64,256,256)")
    for name in cfg.flat():  # every setting of the preset's family
        if name in ("preset", "family"):
            continue
        flag = config_flag(name)
        line = _option_line(lines, flag + (", " if isinstance(getattr(cfg, name), bool)
                                           else " "))
        assert line.endswith(f"(default: {_expected(cfg, name)})"), line
    # a setting of another family says so instead of showing a default
    assert _option_line(lines, "--cd-k CD_K").endswith("(not a setting of family gmmn)")
    assert "config fields (default: preset digits-gmmn's value):" in lines


def test_train_help_without_a_preset_shows_the_default_preset(capsys, monkeypatch):
    from gmmn.cli.train import DEFAULT_PRESET
    from gmmn.presets import PRESETS

    cfg = PRESETS[DEFAULT_PRESET]
    lines = _help_lines(capsys, monkeypatch, "train")
    assert _option_line(lines, "--iterations ITERATIONS").endswith(
        f"(default: {cfg.iterations})")
    assert _option_line(lines, "--sigmas SIGMAS").endswith(f"(default: {_expected(cfg, 'sigmas')})")
    # the generated usage would list all 60 flags
    assert lines[0].startswith("usage: gmmn train") and len(lines[0]) < 100


@pytest.mark.slow
def test_version_prints_without_importing_torch():
    code = ("import sys; from gmmn.cli import main; rc = main(['--version']); "
            "assert 'torch' not in sys.modules, 'torch loaded'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(), timeout=120)
    import gmmn

    assert out.returncode == 0, out.stderr
    assert out.stdout == f"gmmn {gmmn.__version__}\n"


@pytest.mark.parametrize("argv, prog, words", [
    (["train", "--hidden", "abc"], "gmmn train",
     "argument --hidden: expected comma-separated int values, got 'abc'"),
    (["sample", "--n", "x", "--run", "r", "--out", "o.npy"], "gmmn sample",
     "argument --n: invalid int value: 'x'"),
    (["train", "--preset", "digits-gmmn", "--no-such-flag"], "gmmn train",
     "unrecognized arguments: --no-such-flag"),
    (["evaluate"], "gmmn evaluate", "the following arguments are required: --run"),
    (["reproduce", "--dataset", "cifar"], "gmmn reproduce", "argument --dataset: invalid choice"),
    (["data", "info", "digits", "--bogus"], "gmmn data info", "unrecognized arguments: --bogus"),
    (["data", "import", "tfd", "x.pkl.gz"], "gmmn data import",
     "argument NAME: invalid choice: 'tfd'"),
    (["mmd-test", "a.npy"], "gmmn mmd-test", "the following arguments are required: b"),
    (["no-such-command"], "gmmn", "argument COMMAND: invalid choice: 'no-such-command'"),
])
def test_a_bad_flag_is_one_line(capsys, argv, prog, words):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert out.out == "" and len(lines) == 1, out.err
    assert lines[0].startswith(f"{prog}: error: {words}")
    assert lines[0].endswith(f"({prog} --help lists the "
                             f"{'commands' if prog == 'gmmn' else 'flags'})")


def test_data_info_never_downloads(capsys, monkeypatch, tmp_path):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("gmmn data info tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("GMMN_DATA", str(tmp_path))
    for argv in (["data", "info", "mnist"], ["data", "info", "MNIST", "--no-download"]):
        assert main(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith("gmmn data: error: the mnist files were not found in "
                               f"{tmp_path / 'mnist'}")
        assert "`gmmn data download mnist`" in line
        assert "`gmmn data import mnist FILE`" in line
    assert not any(tmp_path.iterdir())  # nothing written into the cache either


# --- progress ---------------------------------------------------------------------------

def _steps(stage: str, iterations: int, *, start: int = 0, stop: int | None = None,
           parts=("mmd",)):
    for t in range(start + 1, (stop or iterations) + 1):
        losses = {p: torch.tensor(1.0 / t) for p in parts}
        yield StepInfo(stage, t, iterations, losses, 0.1, 0.9, {})


def _run(progress: TrainingProgress, *stages) -> None:
    for steps in stages:
        for step in steps:
            progress.update(step)
    progress.close()


def test_log_mode_writes_about_twenty_lines_per_stage_and_the_stage_lines():
    stream = io.StringIO()
    _run(TrainingProgress(mode="log", stream=stream), _steps("pretrain-1", 10),
         _steps("gmmn", 100))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert all(line.startswith("gmmn: stage ") for line in lines)
    # pretrain-1: every 1 iteration (10 // 20 -> 1): start, 1..9, end; gmmn: start, 5..95, end
    assert len(lines) == (1 + 9 + 1) + (1 + 19 + 1)
    assert lines[0] == "gmmn: stage pretrain-1 started: 10 iterations"
    assert lines[10].startswith("gmmn: stage pretrain-1 done: 10 iterations in ")
    assert lines[10].endswith("final loss 0.1")
    assert lines[11] == "gmmn: stage gmmn started: 100 iterations"
    assert lines[12].startswith("gmmn: stage gmmn iteration 5/100 loss 0.2 (")
    assert lines[12].endswith(" it/s)")
    assert lines[-1].startswith("gmmn: stage gmmn done: 100 iterations in ")


def test_log_mode_with_a_fixed_interval_and_a_resumed_stage():
    stream = io.StringIO()
    _run(TrainingProgress(mode="log", every=30, stream=stream), _steps("gmmn", 100, start=40))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "gmmn: stage gmmn started: 100 iterations, resuming at iteration 41"
    assert [line.split()[4] for line in lines[1:-1]] == ["60/100", "90/100"]
    assert lines[-1].startswith("gmmn: stage gmmn done: 60 iterations in ")


def test_stages_mode_writes_only_the_start_and_end_of_each_stage():
    stream = io.StringIO()
    _run(TrainingProgress(mode="stages", stream=stream), _steps("d", 50, parts=("discriminator",
                                                                            "generator")),
         _steps("gmmn", 400))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[0] == "gmmn: stage d started: 50 iterations"
    assert lines[1].startswith("gmmn: stage d done: 50 iterations in ")
    assert lines[1].endswith("final loss discriminator 0.02, generator 0.02")
    assert lines[3].endswith("final loss 0.0025")


def test_a_stage_stopped_early_says_where_on_close():
    stream = io.StringIO()
    progress = TrainingProgress(mode="stages", stream=stream)
    _run(progress, _steps("gmmn", 10, stop=7))
    progress.close()  # twice is harmless
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("gmmn: stage gmmn stopped at iteration 7/10 after ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_mode_draws_one_bar_per_stage_and_auto_follows_the_stream():
    stream = io.StringIO()
    _run(TrainingProgress(mode="bar", stream=stream), _steps("pretrain-1", 20),
         _steps("gmmn", 30))
    text = stream.getvalue()
    assert "gmmn: stage" not in text
    assert "pretrain-1: 100%" in text and "20/20" in text and "30/30" in text
    assert "mmd=0.03333" in text  # the loss in the postfix, at the last iteration
    assert TrainingProgress(stream=_Terminal()).mode == "bar"
    assert TrainingProgress(stream=io.StringIO()).mode == "log"
    with pytest.raises(ConfigError, match="unknown progress mode"):
        TrainingProgress(mode="quiet")
    with pytest.raises(ConfigError, match="at least 1"):
        TrainingProgress(every=0)


_TINY = ["--preset", "digits-gmmn", "--iterations", "40", "--log-every", "10",
         "--checkpoint-every", "0", "--sample-every", "0", "--hidden", "16",
         "--sample-batch-size", "64", "--data-batch-size", "64"]


def _finished(code: int, stderr: str) -> bool:
    # 40 iterations are a smoke run: the fit check of the finished model (its own tests) may
    # reject the samples, which is exit code 2 after training. These tests are about progress.
    return code == 0 or (code == 2 and "error: training finished, but" in stderr)


@pytest.mark.slow
def test_train_logs_lines_not_carriage_returns_when_stderr_is_a_file(tmp_path):
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        out = subprocess.run([sys.executable, "-m", "gmmn", "train", *_TINY, "--out",
                              str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=fh,
                             text=True, env=cli_env(), timeout=300)
    text = err.read_text()
    assert _finished(out.returncode, text), text
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("gmmn: stage gmmn")]
    assert lines[0] == "gmmn: stage gmmn started: 40 iterations"
    assert lines[-1].startswith("gmmn: stage gmmn done: 40 iterations in ")
    assert len(lines) == 2 + 19  # every 2 iterations (40 // 20), the last one is the end line


@pytest.mark.integration
def test_train_without_progress_still_prints_the_stage_lines(tmp_path, capsys):
    code = main(["train", *_TINY, "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert _finished(code, err), err
    lines = [line for line in err.splitlines() if line.startswith("gmmn: stage")]
    assert len(lines) == 2 and "\r" not in err
    assert lines[1].startswith("gmmn: stage gmmn done: 40 iterations in ")


def test_progress_interface_is_keyword_only():
    with pytest.raises(TypeError):
        TrainingProgress("log")  # type: ignore[misc]
