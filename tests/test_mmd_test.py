"""The permutation two-sample test and the ``gmmn mmd-test`` command."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from gmmn.errors import DataError
from gmmn.mmd import MMDError, TwoSampleResult, mmd2, two_sample_test

F64 = torch.float64


def draw(n, m, shift, seed, d=2):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=F64),
            torch.randn(m, d, generator=gen, dtype=F64) + shift)


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear", "rff"])
def test_statistic_is_the_estimator_and_p_value_uses_plus_one(estimator):
    x, y = draw(12, 10, 0.5, 1)
    res = two_sample_test(x, y, sigmas=[1.0], permutations=37, estimator=estimator, seed=4)
    assert isinstance(res, TwoSampleResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.p_value = 0.0
    gen = torch.Generator().manual_seed(4) if estimator == "rff" else None
    ref = mmd2(x, y, sigmas=[1.0], estimator=estimator, generator=gen)
    assert res.statistic == pytest.approx(float(ref), rel=1e-9, abs=1e-12)
    # p = (1 + count) / (1 + P): a multiple of 1/38, never 0.
    assert res.p_value * 38 == pytest.approx(round(res.p_value * 38))
    assert 1 / 38 <= res.p_value <= 1
    assert (res.permutations, res.n, res.m, res.sigmas) == (37, 12, 10, (1.0,))


def test_null_distribution_matches_brute_force_relabelling():
    from gmmn.mmd._kernels import make_spec
    from gmmn.mmd._perm import _relabellings, permutation_statistics

    x, y = draw(6, 5, 0.3, 2)
    z = torch.cat([x, y])
    spec = make_spec("gaussian", (1.3,), (1.0,))
    _, null = permutation_statistics(z, 6, spec, "unbiased", 9, seed=7)
    perms = _relabellings(11, 9, torch.Generator().manual_seed(7), z.device)
    brute = [float(mmd2(z[p[:6]], z[p[6:]], sigmas=[1.3], estimator="unbiased")) for p in perms]
    assert null.tolist() == pytest.approx(brute, rel=1e-10, abs=1e-12)


def test_type_one_error_is_near_alpha():
    rejections = sum(two_sample_test(*draw(15, 15, 0.0, s), permutations=99, seed=s).p_value
                     <= 0.05 for s in range(100))
    # Binomial(100, 0.05): mean 5, P(count > 12) < 0.001 and P(count = 0) ~ 0.006.
    assert 1 <= rejections <= 12


def test_power_against_a_shifted_distribution():
    rejections = sum(two_sample_test(*draw(30, 30, 1.0, s), permutations=99, seed=s).p_value
                     <= 0.05 for s in range(20))
    assert rejections >= 18


def test_median_heuristic_is_used_when_sigmas_is_none():
    from gmmn.mmd import median_heuristic

    x, y = draw(20, 20, 0.0, 3)
    res = two_sample_test(x, y, permutations=10)
    assert res.sigmas == (pytest.approx(median_heuristic(x, y)),)


def test_same_seed_same_p_value_and_bad_arguments():
    x, y = draw(10, 10, 0.4, 5)
    assert two_sample_test(x, y, seed=3, permutations=50) == two_sample_test(
        x, y, seed=3, permutations=50)
    with pytest.raises(MMDError, match="permutations=0"):
        two_sample_test(x, y, permutations=0)
    with pytest.raises(MMDError, match="unknown estimator"):
        two_sample_test(x, y, estimator="nope")
    with pytest.raises(MMDError, match="same number of columns"):
        two_sample_test(x, y[:, :1])


@pytest.mark.slow
def test_cli_prints_json(tmp_path, cli):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(40, 3)))
    np.savez(tmp_path / "b.npz", gen=rng.normal(size=(30, 3)) + 2.0, other=np.zeros(3))
    rows = rng.normal(size=(25, 3))
    (tmp_path / "c.csv").write_text("u,v,w\n" + "\n".join(",".join(map(str, r)) for r in rows))
    out = cli("mmd-test", str(tmp_path / "a.npy"), str(tmp_path / "b.npz"), "--key-b", "gen",
              "--permutations", "199", "--seed", "1", "--sigmas", "1.0", "2.0")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["p_value"] == pytest.approx(1 / 200) and res["statistic"] > 0.1
    assert res["sigmas"] == [1.0, 2.0] and (res["n"], res["m"]) == (40, 30)
    out = cli("mmd-test", str(tmp_path / "a.npy"), str(tmp_path / "c.csv"),
              "--estimator", "linear", "--permutations", "50")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["estimator"] == "linear" and res["m"] == 25 and res["p_value"] > 0.01


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.npy", b"not an array", "bad.npy cannot be read"),
    ("bad.csv", b"a,b,c\n1,2,3\n3,x,5\n", "bad.csv cannot be read"),
    ("bad.txt", b"1,2", "unsupported file type"),
    ("missing.npy", None, "missing.npy does not exist"),
])
def test_cli_bad_file_is_one_line_naming_it(tmp_path, capsys, name, content, message):
    from gmmn.cli import main

    np.save(tmp_path / "a.npy", np.zeros((5, 3)))
    if content is not None:
        (tmp_path / name).write_bytes(content)
    assert main(["mmd-test", str(tmp_path / "a.npy"), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_refuses_pickles_and_ambiguous_npz_without_traceback(tmp_path, cli):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "two.npz", p=np.zeros((4, 2)), q=np.zeros((4, 2)))
    np.save(tmp_path / "a.npy", np.zeros((4, 2)))
    out = cli("mmd-test", str(tmp_path / "obj.npy"), str(tmp_path / "a.npy"))
    assert out.returncode == 2 and "obj.npy" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    from gmmn.cli import main

    with pytest.raises(DataError, match="choose one with --key-b"):  # --debug re-raises
        main(["--debug", "mmd-test", str(tmp_path / "a.npy"), str(tmp_path / "two.npz")])


def test_cli_sigmas_take_commas_and_debug_works_after_the_subcommand(tmp_path, capsys):
    from gmmn.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(20, 3)))
    np.save(tmp_path / "b.npy", rng.normal(size=(20, 3)) + 1.0)
    a, b = str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    assert main(["mmd-test", a, b, "--sigmas", "1,2", "--permutations", "20"]) == 0
    comma = json.loads(capsys.readouterr().out)
    assert main(["mmd-test", a, b, "--sigmas", "1", "2", "--permutations", "20"]) == 0
    assert json.loads(capsys.readouterr().out) == comma and comma["sigmas"] == [1.0, 2.0]
    assert main(["mmd-test", a, b, "--permutations", "0"]) == 2  # one line, no traceback
    with pytest.raises(MMDError, match="must all be finite and > 0"):
        main(["mmd-test", a, b, "--sigmas", "0,1", "--debug"])


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear", "rff"])
@pytest.mark.parametrize(("n", "m"), [(12, 10), (9, 14)])
def test_tiled_path_gives_the_dense_statistic_and_p_value(estimator, n, m):
    from gmmn.mmd._kernels import fourier_frequencies, make_spec
    from gmmn.mmd._perm import permutation_statistics, plan

    x, y = draw(n, m, 0.3, 6)
    assert plan(n + m, 2, estimator, 2048, 53, 1024 if estimator == "rff" else 0).tiled == (
        estimator != "linear")  # the linear statistic never holds a matrix
    dense = two_sample_test(x, y, sigmas=[0.9, 2.0], permutations=53, seed=8,
                            estimator=estimator)
    tiled = two_sample_test(x, y, sigmas=[0.9, 2.0], permutations=53, seed=8,
                            estimator=estimator, memory_budget=2048)
    assert tiled.statistic == pytest.approx(dense.statistic, rel=1e-12, abs=1e-15)
    assert tiled.p_value == dense.p_value
    # The whole null distribution, relabelling by relabelling.
    z = torch.cat([x, y])
    spec = make_spec("gaussian", (0.9, 2.0), (1.0, 1.0))
    freqs = None
    if estimator == "rff":
        freqs = fourier_frequencies(2, spec, 64, torch.Generator().manual_seed(8),
                                    device=z.device, dtype=F64)
    a = permutation_statistics(z, n, spec, estimator, 53, 8, freqs)
    b = permutation_statistics(z, n, spec, estimator, 53, 8, freqs, budget=2048)
    assert b[0] == pytest.approx(a[0], rel=1e-12, abs=1e-15)
    torch.testing.assert_close(b[1], a[1], rtol=1e-12, atol=1e-15)


def test_large_samples_choose_the_tiled_path_within_the_budget():
    from gmmn.mmd import PERM_MEMORY_BUDGET
    from gmmn.mmd._perm import plan

    # Two 20000 x 10 arrays: the dense kernel matrix alone would be 12.8 GB.
    for n_total, perms in ((40_000, 1000), (200_000, 200)):
        how = plan(n_total, 10, "unbiased", PERM_MEMORY_BUDGET, perms)
        assert how.tiled
        held = (4 * 8 * how.block**2 + how.chunk * (n_total + 24 * how.block)
                + 24 * how.draw * n_total)
        assert held <= PERM_MEMORY_BUDGET
    assert not plan(4000, 784, "unbiased", PERM_MEMORY_BUDGET, 1000).tiled


@pytest.mark.slow  # a fresh interpreter imports torch: ~2-3 s on the shared machine
def test_tiled_test_keeps_peak_memory_under_the_dense_matrix():
    import subprocess
    import sys

    code = """
import resource, torch
from gmmn.mmd import two_sample_test
g = torch.Generator().manual_seed(0)
x, y = torch.randn(1500, 10, generator=g), torch.randn(1500, 10, generator=g)
two_sample_test(x[:10], y[:10], permutations=5)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = two_sample_test(x, y, permutations=20, memory_budget=16 * 2**20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, res.p_value)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    grown_mib, p_value = map(float, out.stdout.split())
    # Dense: 3000^2 float64 = 69 MiB for K alone, ~200 MiB with its temporaries.
    assert grown_mib < 40 and 0 < p_value <= 1


def test_bad_memory_budget():
    x, y = draw(10, 10, 0.4, 5)
    with pytest.raises(MMDError, match="memory_budget=0"):
        two_sample_test(x, y, memory_budget=0)


@pytest.mark.parametrize("call, message", [
    (lambda x, y: mmd2(x, y, sigmas="abc"), "sigmas='abc' is not a number or a list"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0, "wide"]), "is not a number or a list of numbers"),
    (lambda x, y: mmd2(x, y, sigmas=[1.0], weights="x"), "weights='x' is not a number"),
    (lambda x, y: two_sample_test(x, y, permutations=2.5), "permutations=2.5 must be a whole"),
    (lambda x, y: mmd2(torch.empty(4, 3, device="meta"), torch.empty(4, 3, device="meta"),
                       sigmas=[1.0]), "x is a meta tensor"),
])
def test_bad_arguments_are_one_mmd_error_naming_them(call, message):
    # Issue 13, row 20: before, these were a bare ValueError, TypeError or RuntimeError.
    x, y = torch.rand(6, 3, generator=torch.Generator().manual_seed(0)), torch.rand(7, 3)
    with pytest.raises(MMDError, match=re.escape(message)):
        call(x, y)


def test_numpy_integers_and_arrays_are_accepted():
    x = torch.rand(8, 2, generator=torch.Generator().manual_seed(1))
    y = torch.rand(8, 2, generator=torch.Generator().manual_seed(2))
    a = two_sample_test(x, y, sigmas=np.array([1.0]), permutations=np.int64(20), seed=0)
    b = two_sample_test(x, y, sigmas=[1.0], permutations=20, seed=0)
    assert a.statistic == b.statistic and a.p_value == b.p_value
