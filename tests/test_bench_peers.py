"""benchmarks/peers.py's pure helpers and its handling of missing peers, with gmmn only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from gmmn.mmd import mmd2, paper_sigmas

PEERS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", PEERS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_cdist_reference_equals_gmmn_in_float32(peers):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(70, 20, generator=gen)
    y = torch.rand(50, 20, generator=gen) * 0.8
    sig = paper_sigmas("mnist")
    ours = float(mmd2(x, y, sigmas=sig))
    ref = float(peers.cdist_mmd2(x, y, sig))
    exact = float(mmd2(x.double(), y.double(), sigmas=sig))
    assert ours > 0.05  # a real difference, not two zeros agreeing
    # cdist's float32 distances cancel more than gmmn's tiles: both are within float32
    # rounding of the six kernel sums, gmmn the closer to the float64 value
    assert peers.agrees(ref, ours, kernel_scale=len(sig))
    assert not peers.agrees(ref * 1.001, ours, kernel_scale=len(sig))
    assert abs(ours - exact) <= abs(ref - exact) and ours == pytest.approx(exact, rel=2e-6)


def test_energy_reference_matches_double_loop(peers):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 3, generator=gen, dtype=torch.float64) + 1

    def mean_dist(a, b):
        return sum(float((u - v).norm()) for u in a for v in b) / (len(a) * len(b))

    loop = 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    assert peers.energy_distance(x, y) == pytest.approx(loop, rel=1e-12)


def test_extrapolation_is_exact_for_a_line(peers):
    assert peers.extrapolate(1.5 + 10 * 0.2, 10, 1.5 + 20 * 0.2, 20, 1000) == pytest.approx(
        1.5 + 1000 * 0.2)
    assert peers.agrees(1.0 + 1e-7, 1.0, kernel_scale=1.0)
    assert not peers.agrees(1e-3, 2e-3, kernel_scale=1.0)


def test_missing_peer_is_reported_not_raised(peers, monkeypatch, tmp_path, capsys):
    assert peers.peer_missing(("torch",)) is None
    assert peers.peer_missing(("torch", "no_such_peer_module_gmmn")) == peers.MISSING
    # Whatever is installed here, every peer counts as missing: gmmn's rows still run.
    real = peers.peer_missing
    monkeypatch.setattr(peers, "peer_missing",
                        lambda mods: None if mods == ("gmmn",) else real(("no_such_peer_x",)))
    out = tmp_path / "peers.json"
    assert peers.main(["--quick", "--cases", "loss1000,perm500", "--rounds", "1",
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not installed (pip install 'gmmn[bench]')" in printed
    results = json.loads(out.read_text())["results"]
    for case in results:
        rows = {r["name"]: r for r in case["rows"]}
        assert rows["gmmn"]["status"] == "ok" and rows["gmmn"]["median_s"] > 0
        assert all(r["status"] == peers.MISSING for n, r in rows.items() if n != "gmmn")
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temp file


def test_peers_flag_keeps_gmmn_and_the_named_peers_only(peers):
    rows = peers.leave_out(peers.perm_contenders(), ("dcor", "hyppo"))
    kept = [r.name for r in rows if r.status == "ok"]
    assert kept == ["gmmn", "hyppo MMD", "hyppo Energy", "dcor energy test"]
    assert all(r.status == "ok" for r in peers.leave_out(peers.perm_contenders(), ()))


def test_a_peer_that_fails_or_runs_out_of_memory_is_reported(peers, monkeypatch):
    monkeypatch.setitem(peers.COLLECT, "before_each_call", False)  # gc.collect: ~0.5 s
    def no_memory(_p):
        raise MemoryError  # numpy's message can be empty: still one readable line

    def broken(_p):
        raise RuntimeError("peer bug\nsecond line")

    oom = peers.Contender("a", ("torch",), "a()", "float32", "biased (V)", run=no_memory)
    bad = peers.Contender("b", ("torch",), "b()", "float32", "biased (V)", run=broken)
    cpu = torch.device("cpu")
    assert peers.timed(oom, 10, cpu) is None and oom.status == "out of memory (MemoryError)"
    assert peers.timed(bad, 10, cpu) is None and bad.status == "failed: RuntimeError: peer bug"
