"""Hardening, second round (issue 24), the rows about settings, checkpoints and API arguments:
float32 ranges (7), damaged checkpoints (8), the permutation test's count (10), a GAN that
diverges late (12), pickled checkpoints (13), seeds (14), API arguments (18), reproduce's flags
(19) and a lost final sample grid (21a). Each test is a case that used to end in a traceback,
a silent wrong result or a run without end. docs/reliability.md lists them with their outcomes.
The CLI fuzz runs a few hundred bad values through every numeric flag (slow tier)."""

from __future__ import annotations

import math
import os
import re
import weakref

import numpy as np
import pytest
import torch

import gmmn.mmd as mmd
from conftest import all_settings, config_with, one_line_error
from gmmn import GMMN, load_run
from gmmn.cli import main
from gmmn.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from gmmn.mmd import MMDError, mmd2, mmd_loss, two_sample_test
from gmmn.presets import get_preset
from gmmn.training.checkpoint import load_checkpoint, save_checkpoint
from gmmn.training.loop import Part, Stage, train_loop
from gmmn.training.optim import ReleasedSGD, constant
from gmmn.training.run import run_training

TINY_FLAGS = ["--iterations", "4", "--sample-batch-size", "16", "--data-batch-size", "16",
              "--hidden", "8", "--checkpoint-every", "0", "--no-progress"]
TINY = {"iterations": 4, "sample_batch_size": 16, "data_batch_size": 16, "hidden": (8,),
        "checkpoint_every": 0, "log_every": 1, "sample_every": 0}
F32_MAX = float(np.finfo(np.float32).max)


_one_line_error = one_line_error  # tests/conftest.py


def _ranges() -> dict:
    """Every bounded setting's (low, high, low included, high included)."""
    return {n: b for n, (_, b) in all_settings().items() if b is not None}


class Stop(Exception):
    """Raised from a callback: the process 'dies' after the last checkpoint."""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished digits-gmmn run, trained once by the CLI."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "--preset", "digits-gmmn", "--out", str(out), *TINY_FLAGS]) == 0
    return out


@pytest.fixture(scope="module")
def half_run(tmp_path_factory):
    """An unfinished run whose checkpoint stands at iteration 2 of 4 (a stage state)."""
    out = tmp_path_factory.mktemp("half") / "run"
    cfg = get_preset("digits-gmmn").override(**{**TINY, "checkpoint_every": 2})

    def stop(step):
        if step.iteration == 3:
            raise Stop
    with pytest.raises(Stop):
        run_training(cfg, out_dir=out, callback=stop)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["iteration"] == 2 and state["stage_state"] is not None
    return out


# --- row 7: values beyond float32 -----------------------------------------------------------

@pytest.mark.parametrize("field", ["lr", "ae_lr", "gan_min_lr", "late_lr_factor", "ae_clip",
                                   "init_std", "gsn_hidden_noise", "chain_noise"])
@pytest.mark.parametrize("value", [1e300, 1e39])
def test_float_fields_beyond_float32_are_refused_before_training(field, value):
    # Before: accepted, then "value cannot be converted to type float without overflow" at
    # the first step.
    with pytest.raises(ConfigError, match=re.escape(f"--{field.replace('_', '-')} must be") +
                       ".*float32"):
        config_with(**{field: value})
    config_with(**{field: 1e38 if field != "gan_min_lr" else 1e-3})  # within float32: fine


def test_every_range_is_bounded_by_float32_or_int64():
    hints = {n: h for n, (h, _) in all_settings().items()}
    for name, (_, high, _, _) in _ranges().items():
        whole = "int" in str(hints[name]) and "float" not in str(hints[name])
        assert high <= (2**63 - 1 if whole else F32_MAX), name


def test_a_learning_rate_product_beyond_float32_is_refused():
    with pytest.raises(ConfigError, match="--lr 1e\\+30 times --late-lr-factor"):
        config_with(lr=1e30, late_lr_factor=1e10)
    config_with(lr=None, late_lr_factor=1e10)  # chosen from the data: checked once chosen


@pytest.mark.integration
def test_a_huge_lr_is_one_line_on_the_command_line_and_in_the_api(tmp_path, capsys):
    out = tmp_path / "run"
    for lr in ("1e300", "1e39"):
        assert main(["train", "--preset", "digits-gmmn", "--out", str(out), *TINY_FLAGS,
                     "--lr", lr]) == 2
        _one_line_error(capsys, "--lr must be positive and at most 3.40282e+38")
        assert not out.exists()
    with pytest.raises(ConfigError, match="--lr must be"):
        GMMN(iterations=2, lr=1e300).fit(np.random.default_rng(0).random((20, 3)))


# --- row 8: damaged checkpoints, entry by entry ---------------------------------------------

def _mutations(state: dict) -> list[tuple[str, object]]:
    """(name, function changing a copy of ``state``): every entry removed, retyped or out of
    range, one at a time; each makes the checkpoint unusable."""
    key = next(iter(state["model"]))

    def delete(*path):
        def f(s):
            d = s
            for p in path[:-1]:
                d = d[p]
            del d[path[-1]]
        return f

    def put(value, *path):
        def f(s):
            d = s
            for p in path[:-1]:
                d = d[p]
            d[path[-1]] = value
        return f

    out = [(f"no {k}", delete(k)) for k in state if k not in ("format", "versions")]
    out += [(f"no data.{k}", delete("data", k))
            for k in ("name", "dim", "image_shape", "unit_interval", "source")]
    out += [(f"no rng.{k}", delete("rng", k)) for k in state["rng"]]
    bad = {
        "config": [5, "{", "[]", '{"lr": "fast"}'],
        "data": ["x", [1, 2], None],
        "model": [[1, 2], "x", {}, None],
        "stage_index": [7, -1, "0", 1.0, True, None],
        "iteration": [-5, 10**6, "abc", 2.0, None, 1],
        "stage": [5, "gan", "gmmn"],
        "stage_state": ["x", 3, [1]],
        "rng": ["x", {}, None],
        "metrics_offset": [-1, "x", 1.5, None],
        "elapsed": [-1.0, math.nan, math.inf, "x", None],
        "done": ["yes", False, 1, None],
        "versions": ["x"],
    }
    out += [(f"{k}={v!r}", put(v, k)) for k, values in bad.items() for v in values]
    data_bad = {
        "dim": ["x", -1, 0, 65, True, 64.0],
        "name": [3, None],
        "source": [None],
        "unit_interval": ["yes", 1, None],
        "image_shape": [[8], [8, 9], "8x8", [0, 64], [8, 8, 1, 1], [8.0, 8.0]],
        "mean": [torch.zeros(3), torch.full((64,), math.nan), "x"],
        "std": [torch.zeros(64), torch.ones(5), -torch.ones(64)],
        "fingerprint": ["x", {"sha256": 3}, {"shape": "x", "min": 0, "max": 1, "sha256": "a"}],
    }
    out += [(f"data.{k}={v!r}", put(v, "data", k)) for k, values in data_bad.items()
            for v in values]
    rng_bad = {
        "torch": [torch.zeros(10, dtype=torch.uint8), "x"],
        "python_state": [torch.zeros(5, dtype=torch.int64), "x"],
        "python_version": [99],
        "numpy_keys": [torch.zeros(5, dtype=torch.int64), -torch.ones(624, dtype=torch.int64)],
        "numpy_pos": [10**6, "x"],
        "numpy_kind": ["PCG64"],
    }
    out += [(f"rng.{k}={v!r}", put(v, "rng", k)) for k, values in rng_bad.items()
            for v in values]
    out += [("model[w]='x'", put("x", "model", key)),
            ("model[w] of a wrong shape", put(torch.zeros(3, 3), "model", key)),
            ("model with an extra weight", put(torch.zeros(3), "model", "extra.weight"))]
    return out


@pytest.mark.integration
def test_every_damaged_entry_is_one_checkpoint_error_for_load_run(tiny_run, tmp_path):
    state = load_checkpoint(tiny_run / "checkpoint.pt")
    mutations = _mutations(state)
    assert len(mutations) > 100
    path = tmp_path / "checkpoint.pt"
    accepted = []
    for name, change in mutations:
        damaged = load_checkpoint(tiny_run / "checkpoint.pt")
        change(damaged)
        save_checkpoint(damaged, path)
        try:
            load_run(path)
        except CheckpointError as exc:
            assert str(path) in str(exc) and len(str(exc).splitlines()) == 1, (name, exc)
        else:
            accepted.append(name)
    assert not accepted
    load_run(tiny_run)  # the undamaged original still loads


def _pop(key):
    return lambda s: s.pop(key)


def _set(value, *path):
    def change(s):
        for p in path[:-1]:
            s = s[p]
        s[path[-1]] = value
    return change


@pytest.mark.integration
@pytest.mark.parametrize("damage", [
    _pop("rng"), _pop("stage_state"), _pop("metrics_offset"), _pop("elapsed"),
    _set("abc", "iteration"), _set("x", "data", "dim"), _set(-1, "data", "dim"),
    _set(7, "stage_index"), _set(-1, "stage_index"), _set(-5, "iteration"),
    _set(10**6, "iteration"), _set([1, 2], "model"), _set(torch.zeros(3), "data", "mean"),
    _set([8, 9], "data", "image_shape"), _set(torch.zeros(10, dtype=torch.uint8), "rng", "torch"),
], ids=["no rng", "no stage_state", "no metrics_offset", "no elapsed", "iteration abc",
        "dim x", "dim -1", "stage_index 7", "stage_index -1", "iteration -5", "iteration 1e6",
        "model list", "mean of 3", "image_shape 8x9", "torch rng of 10 bytes"])
def test_damaged_checkpoints_are_one_line_on_resume_sample_and_load_run(half_run, tmp_path,
                                                                       capsys, damage):
    # Before: KeyError and other tracebacks, or (stage_index 7, iteration 10**6) a run
    # reported "trained" without training.
    state = load_checkpoint(half_run / "checkpoint.pt")
    damage(state)
    out = tmp_path / "run"
    out.mkdir()
    path = out / "checkpoint.pt"
    save_checkpoint(state, path)
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, str(path))
    assert main(["sample", "--run", str(out), "--out", str(tmp_path / "s.npy")]) == 2
    _one_line_error(capsys, str(path))
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_run(out)


@pytest.mark.integration
@pytest.mark.parametrize("stage_state", [{}, {"optimizers": "x"}, {"optimizers": {}},
                                         {"optimizers": {"mmd": {"lr": 1}}}])
def test_a_stage_state_that_does_not_fit_its_stage_is_one_line_on_resume(
        half_run, tmp_path, capsys, stage_state):
    state = load_checkpoint(half_run / "checkpoint.pt")
    state["stage_state"] = stage_state
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint(state, out / "checkpoint.pt")
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, str(out / "checkpoint.pt"), "stage_state")


@pytest.mark.integration
def test_stage_index_and_iteration_are_checked_against_the_stages_of_the_config(tiny_run,
                                                                                 tmp_path):
    state = load_checkpoint(tiny_run / "checkpoint.pt")
    assert state["stage_index"] == 1 and state["done"]  # digits-gmmn: one stage, finished
    path = tmp_path / "checkpoint.pt"
    for index, iteration, done, ok in ((1, 0, True, True), (0, 4, False, True),
                                       (0, 5, False, False), (2, 0, True, False),
                                       (1, 3, True, False), (0, 0, True, False)):
        s = load_checkpoint(tiny_run / "checkpoint.pt")
        s.update(stage_index=index, iteration=iteration, done=done,
                 stage_state={} if iteration else None)
        save_checkpoint(s, path)
        if ok:
            load_run(path)
        else:
            with pytest.raises(CheckpointError, match="stage_index|iteration|done"):
                load_run(path)


# --- row 13: a checkpoint that carries code --------------------------------------------------

@pytest.mark.parametrize("payload", [os.system, Stop("code")])
def test_a_pickled_global_is_refused_without_advising_the_unsafe_load(tmp_path, payload):
    path = tmp_path / "evil.pt"
    torch.save({"format": "gmmn-checkpoint-1", "payload": payload}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "carries pickled Python objects, which gmmn never loads" in text, text
    assert "weights_only" not in text and "Weights only" not in text, text
    assert len(text.splitlines()) == 1


# --- row 12: a GAN that diverges between its checks ------------------------------------------

class _OneWeight(Stage):
    """One weight, checked every 100 iterations: its loss 0 * w until ``bad_from``, then
    NaN * w, or (``overflow``) a finite 1e30 * w whose step leaves the weight infinite."""

    check_every = 100

    def __init__(self, iterations: int, bad_from: int, *, overflow: bool = False) -> None:
        self.name, self.iterations = "gan", iterations
        self.w = torch.nn.Parameter(torch.ones(3))

        def loss(t: int) -> torch.Tensor:
            if t < bad_from:
                return (self.w * 0).sum()
            return (self.w * (1e30 if overflow else math.nan)).sum()
        self.parts = (Part("generator", ReleasedSGD([self.w], lr=1e10, momentum=0.0),
                           constant(lr=1e10, momentum=0.0), loss),)


def test_a_loss_that_turns_nan_after_the_last_check_stops_at_the_last_iteration():
    # Before: checked only every check_every (100) iterations, so 7 iterations never were.
    with pytest.raises(TrainingDiverged, match="generator loss became nan by iteration 7"):
        train_loop(_OneWeight(7, 5))
    train_loop(_OneWeight(7, 8))  # finite throughout: no error


def test_weights_that_the_last_step_made_infinite_are_divergence():
    stage = _OneWeight(7, 7, overflow=True)
    with pytest.raises(TrainingDiverged, match="generator weights became NaN or infinite by "
                                               "iteration 7"):
        train_loop(stage)
    assert not bool(torch.isfinite(stage.w).all())


@pytest.mark.integration
def test_a_short_diverging_gan_is_never_marked_done(tmp_path, capsys):
    out = tmp_path / "run"
    gan = ["--preset", "digits-gan", "--out", str(out), *TINY_FLAGS, "--iterations", "5",
           "--disc-hidden", "8", "--disc-pieces", "2", "--disc-dropout", "0.2,0.5"]
    # Before: rc 0, "trained", done=True with NaN weights (log_every 100 > 5 iterations).
    assert main(["train", *gan, "--lr", "1e30"]) == 2
    _one_line_error(capsys, "training diverged in stage gan")
    assert not (out / "checkpoint.pt").exists() or not load_checkpoint(
        out / "checkpoint.pt")["done"]
    assert main(["train", *gan, "--gan-instance-noise", "1e300"]) == 2
    _one_line_error(capsys, "--gan-instance-noise must be >= 0 and <= 1000")


# --- row 14: seeds ---------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("seed", ["18446744073709551616", "-9223372036854775809", "-1"])
def test_out_of_range_seeds_are_one_line(tiny_run, tmp_path, capsys, seed):
    assert main(["sample", "--run", str(tiny_run), "--n", "3", "--seed", seed,
                 "--out", str(tmp_path / "s.npy")]) == 2
    _one_line_error(capsys, "--seed must be from 0 to 2**64 - 1")
    assert main(["data", "info", "digits", "--seed", seed]) == 2
    _one_line_error(capsys, "--seed must be from 0 to 4294967295")
    assert main(["train", "--preset", "digits-gmmn", "--seed", seed,
                 "--out", str(tmp_path / "r"), *TINY_FLAGS]) == 2
    _one_line_error(capsys, "--seed must be")


@pytest.mark.integration
def test_api_seeds_are_range_checked_and_numpy_integers_accepted(tiny_run):
    run = load_run(tiny_run)
    for seed in (2**64, -1, "a", 1.5, True):
        with pytest.raises(ConfigError, match="seed must be a whole number"):
            run.sample(3, seed=seed)
    assert torch.equal(run.sample(3, seed=np.int64(3)), run.sample(3, seed=3))
    x, y = torch.rand(8, 2), torch.rand(8, 2) + 0.5
    for seed in ("a", 2**64, -1, 1.5):
        with pytest.raises(MMDError, match="seed=.* must be a whole number"):
            two_sample_test(x, y, seed=seed, permutations=10)
    a = two_sample_test(x, y, seed=np.int64(3), permutations=30)
    assert a == two_sample_test(x, y, seed=3, permutations=30)


# --- row 18: bad arguments to the Python API -------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: mmd2(torch.rand(5, 0), torch.rand(6, 0), sigmas=[1.0]), "0 features"),
    (lambda: mmd_loss(torch.rand(5, 0), torch.rand(6, 0), sigmas=[1.0]), "0 features"),
    (lambda: two_sample_test(torch.rand(5, 0), torch.rand(6, 0)), "0 features"),
    (lambda: mmd2(torch.rand(5, 2), torch.rand(6, 2), sigmas=[1.0], block_size=1.5),
     "block_size=1.5 must be a whole number"),
    (lambda: mmd_loss(torch.rand(5, 2), torch.rand(6, 2), sigmas=[1.0], block_size="2"),
     "block_size='2' must be a whole number"),
    (lambda: two_sample_test(torch.rand(5, 2), torch.rand(6, 2), memory_budget=1e30),
     "memory_budget=1e+30 bytes is more than"),
    (lambda: two_sample_test(torch.rand(5, 2), torch.rand(6, 2), memory_budget="x"),
     "memory_budget='x' must be a positive whole number"),
    (lambda: two_sample_test(torch.rand(5, 2), torch.rand(6, 2), memory_budget=math.nan),
     "memory_budget=nan must be"),
])
def test_bad_mmd_arguments_are_one_mmd_error_naming_them(call, message):
    # Before: RuntimeError (vector_norm of an empty tensor) or TypeError.
    with pytest.raises(MMDError, match=re.escape(message)):
        call()


def test_numpy_and_float_whole_numbers_are_accepted_by_the_mmd_functions():
    x, y = torch.rand(5, 2, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64)
    assert mmd2(x, y, sigmas=[1.0], block_size=np.int64(2)) == mmd2(x, y, sigmas=[1.0],
                                                                     block_size=2)
    assert two_sample_test(x, y, memory_budget=2048.0, permutations=20) == two_sample_test(
        x, y, memory_budget=2048, permutations=20)


@pytest.mark.integration
@pytest.mark.parametrize("n", [2.5, "3", None, True])
def test_sample_counts_that_are_not_whole_numbers_are_one_data_error(tiny_run, n):
    model = GMMN.load(tiny_run / "checkpoint.pt")
    with pytest.raises(DataError, match="the number of samples must be a whole number"):
        model.sample(n)
    assert model.sample(np.int64(2)).shape == (2, 64)


@pytest.mark.integration
def test_sample_counts_that_cannot_fit_are_refused_before_allocating(tiny_run):
    # Before: the allocator's RuntimeError ("you tried to allocate 40000000000000 bytes").
    with pytest.raises(DataError, match="10000000000 samples of 64 dimensions needs at least"):
        load_run(tiny_run).sample(10**10)
    with pytest.raises(DataError, match="needs at least"):
        GMMN.load(tiny_run / "checkpoint.pt").sample(10**12)


@pytest.mark.integration
def test_a_network_that_cannot_fit_is_refused_before_allocating():
    x = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ConfigError, match="weights needs at least .* --hidden"):
        GMMN(iterations=2, hidden=(10**12,)).fit(x)


@pytest.mark.integration
def test_sparse_training_data_is_one_data_error_saying_so():
    x = torch.rand(20, 3)
    for sparse in (x.to_sparse(), x.to_sparse_csr()):
        with pytest.raises(DataError, match="sparse .* dense array"):
            GMMN(iterations=2).fit(sparse)
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(DataError, match=r"sparse csr_matrix.*\(X\.toarray\(\)"):
        GMMN(iterations=2).fit(scipy_sparse.csr_matrix(x.numpy()))


# --- row 19: gmmn reproduce's arguments -------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("flags, message", [
    (["--models", ","], "--models names no model"),
    (["--iterations-scale", "inf"], "--iterations-scale must be positive and finite"),
    (["--iterations-scale", "nan"], "--iterations-scale must be positive and finite"),
    (["--iterations-scale", "1e300"], "more than a run can count"),
])
def test_reproduce_arguments_are_one_line(tmp_path, capsys, flags, message):
    # Before: IndexError (no model) and OverflowError (round(inf)) tracebacks.
    assert main(["reproduce", "--dataset", "digits", "--out", str(tmp_path / "r"),
                 *flags]) == 2
    _one_line_error(capsys, message)
    assert not (tmp_path / "r").exists()


# --- row 10: the permutation test's count ----------------------------------------------------

def test_absurd_permutation_counts_are_refused_at_once(tmp_path, capsys):
    x, y = torch.rand(10, 2), torch.rand(10, 2)
    # Before: accepted, and ran without end while its memory grew (~1.3 MB/s).
    with pytest.raises(MMDError, match="permutations=1000000000000 is more than 1e\\+09"):
        two_sample_test(x, y, permutations=10**12)
    np.save(tmp_path / "a.npy", x.numpy())
    np.save(tmp_path / "b.npy", y.numpy())
    assert main(["mmd-test", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                 "--permutations", "1000000000000"]) == 2
    _one_line_error(capsys, "permutations=1000000000000 is more than")


def test_a_count_whose_time_extrapolates_past_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(mmd, "PERM_TIME_LIMIT", 1e-9)
    x, y = torch.rand(10, 2), torch.rand(10, 2)
    with pytest.raises(MMDError, match="permutations=1000000 would take about .* PERM_TIME_LIMIT"):
        two_sample_test(x, y, permutations=10**6)
    two_sample_test(x, y, permutations=200)  # one chunk: nothing to extrapolate


@pytest.mark.parametrize("budget, permutations", [(None, 40 * 256), (2048, 160)])  # dense, tiled
def test_the_null_distribution_is_never_held_whole(monkeypatch, budget, permutations):
    from gmmn.mmd import _perm

    alive: list[int] = []
    refs: list[weakref.ref] = []
    originals = {"_quadratic": _perm._quadratic, "_combine": _perm._combine}
    name = "_quadratic" if budget is None else "_combine"

    def spy(*args, **kwargs):
        alive.append(sum(r() is not None for r in refs))
        out = originals[name](*args, **kwargs)
        refs.append(weakref.ref(out))
        return out
    monkeypatch.setattr(_perm, name, spy)
    x, y = torch.rand(12, 2, dtype=torch.float64), torch.rand(12, 2, dtype=torch.float64)
    two_sample_test(x, y, permutations=permutations, memory_budget=budget)
    # Before: every chunk's statistics stayed alive until the end (40 of them).
    assert len(alive) >= 20 and max(alive) <= 2, alive


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear", "rff"])
@pytest.mark.parametrize("budget", [None, 2048])
def test_counting_as_it_goes_gives_the_p_value_of_the_whole_null(estimator, budget):
    from gmmn.mmd._kernels import fourier_frequencies, make_spec
    from gmmn.mmd._perm import permutation_statistics

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(11, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(9, 2, generator=gen, dtype=torch.float64) + 0.3
    res = two_sample_test(x, y, sigmas=[1.1], permutations=777, seed=5, estimator=estimator,
                          memory_budget=budget)
    spec = make_spec("gaussian", (1.1,), (1.0,))
    z = torch.cat([x, y])
    freqs = None
    if estimator == "rff":
        freqs = fourier_frequencies(2, spec, 1024, torch.Generator().manual_seed(5),
                                    device=z.device, dtype=z.dtype)
    stat, null = permutation_statistics(z, 11, spec, estimator, 777, 5, freqs,
                                        budget=budget or mmd.PERM_MEMORY_BUDGET)
    tol = 1e-9 * (abs(stat) + 1.0 / 9)
    assert res.p_value == (1 + int((null >= stat - tol).sum())) / 778  # bit-identical


# --- row 21a: a finished run that lost its final sample grid ----------------------------------

@pytest.mark.integration
def test_resuming_a_finished_run_rewrites_a_lost_sample_grid(tmp_path):
    cfg = get_preset("digits-gmmn").override(**TINY)
    out = tmp_path / "run"
    run_training(cfg, out_dir=out)
    grid = (out / "samples.png").read_bytes()
    (out / "samples.png").unlink()  # a kill between the last checkpoint and the grid
    before = (out / "checkpoint.pt").read_bytes()
    run_training(cfg, out_dir=out, resume=True)
    # Before: the finished run was kept as it was, without its grid.
    assert (out / "samples.png").read_bytes() == grid
    assert (out / "checkpoint.pt").read_bytes() == before  # nothing trained again


# --- the CLI fuzz: a few hundred bad values through every numeric flag -------------------------

def _bad_values(low, high, low_in, high_in, *, whole: bool, tuple_field: bool) -> list[str]:
    values = ["-1", "-1e300", "1e300", "inf", "-inf", "nan", "abc", "1e", "0x10"]
    values += ["18446744073709551616", "1.5"] if whole else ["1e39", "-0.5"]
    if not tuple_field:
        values.append("")
    else:
        values += ["1,-1", "1,nan", "2,1e300"]
    if low == 0 and not low_in:
        values.append("0")
    if high not in (F32_MAX, 2**63 - 1):
        values.append(str(high + 1 if whole else high * 2 + 1))
    return values


def _train_cases() -> list[list[str]]:
    hints = {n: h for n, (h, _) in all_settings().items()}
    cases = []
    for name, (low, high, low_in, high_in) in _ranges().items():
        hint = str(hints[name])
        whole = "int" in hint and "float" not in hint
        flag = "--" + name.replace("_", "-")
        for value in _bad_values(low, high, low_in, high_in, whole=whole,
                                 tuple_field="tuple" in hint):
            cases.append([flag, value])
    return cases


@pytest.mark.slow
def test_cli_fuzz_every_numeric_flag_is_one_line_and_rc_2(tiny_run, tmp_path, capsys):
    def check(argv: list[str]) -> None:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own one-line errors (gmmn.cli.Parser)
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)

    out = tmp_path / "run"
    train = _train_cases()
    for flag, value in train:  # after the tiny flags, so the fuzzed value wins
        check(["train", "--preset", "digits-gmmn", "--out", str(out), *TINY_FLAGS,
               f"{flag}={value}"])
        assert not out.exists(), (flag, value)
    scalar = ["-1", "-1e300", "1e300", "inf", "nan", "abc", "", "1e", "-9223372036854775809"]
    big = "18446744073709551616"
    chain = (("--chains", ["0", big]), ("--burn-in", [big]), ("--thin", ["0", big]))
    counts = 0
    for flag, extra in (("--n", ["0", big]), ("--seed", [big]), *chain,
                        ("--chain-noise", ["0"])):
        for value in scalar + extra:
            check(["sample", "--run", str(tiny_run), "--out", str(tmp_path / "s.npy"),
                   f"{flag}={value}"])
            counts += 1
    for flag, extra in (("--n-samples", ["0", big]), ("--seed", [big]), *chain,
                        ("--chain-noise", ["0", "1,-1"])):
        for value in scalar + extra:
            check(["evaluate", "--run", str(tiny_run), "--metrics", "parzen",
                   "--out", str(tmp_path / "ev" / "report.json"), f"{flag}={value}"])
            counts += 1
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.random.default_rng(0).random((10, 2)))
    np.save(b, np.random.default_rng(1).random((10, 2)))
    for flag, extra in (("--permutations", ["0", "1000000000000", big]), ("--seed", [big]),
                        ("--sigmas", ["0", "1e300", "1,-1"])):
        for value in scalar + extra:
            check(["mmd-test", str(a), str(b), f"{flag}={value}"])
            counts += 1
    rep = tmp_path / "rep"
    for flag, extra in (("--seeds", [big, "0,0", ","]), ("--n-samples", ["0", big]), *chain,
                        ("--iterations-scale", ["0", "1e309"])):
        for value in scalar + extra:
            check(["reproduce", "--dataset", "digits", "--out", str(rep), f"{flag}={value}"])
            assert not (rep / "digits-gmmn").exists(), (flag, value)
            counts += 1
    assert len(train) + counts > 500
