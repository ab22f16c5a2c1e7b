"""Runs written by earlier code keep working, and every digits preset trains as it did.

The fixtures (tests/fixtures, written by tests/fixtures/make_fixtures.py before the package
was reorganised into one module per model family) are checked three ways:

* each family's half-trained and finished checkpoint loads and samples the numbers it
  sampled then;
* the half-trained one, resumed by today's ``gmmn train --resume``, ends with the weights and
  the metrics.jsonl of the run the old code finished;
* the first 200 iterations of every digits preset log the values they logged then.

Bit-identical on the machine that wrote them (same CPU model and torch); elsewhere float32
kernels may round differently, so there the values must agree to 1e-4 (relative).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gmmn import load_run
from gmmn.cli import main
from gmmn.presets import get_preset
from gmmn.training.run import run_training

FIXTURES = Path(__file__).parent / "fixtures"
CHECKPOINTS = FIXTURES / "checkpoints"
FAMILIES = sorted(p.name for p in CHECKPOINTS.iterdir())
PINNED = json.loads((FIXTURES / "pinned_metrics.json").read_text())

pytestmark = pytest.mark.integration


def _same_machine() -> bool:
    """Bit-identical numbers are asked for only where the fixtures' CPU kernels run: the
    same CPU model, torch and kernel set. The model name alone is not enough ("AMD EPYC"
    names CPUs with AVX-512 kernels and without), so fixtures that did not record their
    kernel set are compared within float32 tolerance."""
    from make_fixtures import _cpu_model

    m = PINNED["machine"]
    return (m["cpu"] == _cpu_model() and m["torch"] == torch.__version__
            and m.get("capability") == torch.backends.cpu.get_cpu_capability())


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixtures were written
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def fixture_path():
    import sys

    sys.path.insert(0, str(FIXTURES))
    yield
    sys.path.remove(str(FIXTURES))


def _assert_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if _same_machine():
        assert torch.equal(a, b), f"{what} differs from the fixture"
    else:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=what)


def _numbers(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed"}
            for line in path.read_text().splitlines()]


def test_every_family_has_fixtures():
    assert FAMILIES == ["dbn", "gan", "gmmn", "gmmn-ae", "gsn", "scae"]


@pytest.mark.parametrize("family", FAMILIES)
def test_old_checkpoints_sample_the_same_numbers(family):
    expected = torch.load(CHECKPOINTS / family / "expected.pt", weights_only=True)
    for part in ("half", "full"):
        samples = load_run(CHECKPOINTS / family / part).sample(6, seed=0)
        _assert_same(samples, expected[part], f"{family}/{part} samples")


@pytest.mark.parametrize("family", FAMILIES)
def test_old_half_trained_checkpoint_resumes_to_the_old_end(family, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(CHECKPOINTS / family / "half", run)
    assert main(["train", "--out", str(run), "--resume"]) == 0
    new = torch.load(run / "checkpoint.pt", weights_only=True)
    old = torch.load(CHECKPOINTS / family / "full" / "checkpoint.pt", weights_only=True)
    assert new["done"] and sorted(new["model"]) == sorted(old["model"])
    for name in old["model"]:
        _assert_same(new["model"][name], old["model"][name], f"{family} weight {name}")
    new_rows, old_rows = _numbers(run / "metrics.jsonl"), _numbers(
        CHECKPOINTS / family / "full" / "metrics.jsonl")
    assert [(r["stage"], r["iteration"]) for r in new_rows] == \
        [(r["stage"], r["iteration"]) for r in old_rows]
    for a, b in zip(new_rows, old_rows, strict=True):
        _assert_same(torch.tensor([a[k] for k in sorted(b) if k not in ("stage",)],
                                  dtype=torch.float64),
                     torch.tensor([b[k] for k in sorted(b) if k not in ("stage",)],
                                  dtype=torch.float64), f"{family} metrics row {b}")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("preset", sorted(PINNED["rows"]))
def test_digits_presets_log_the_pinned_numbers(preset, tmp_path):
    count = 0

    def stop(step) -> None:
        nonlocal count
        count += 1
        if count > PINNED["steps"]:
            raise _Stop

    with pytest.raises(_Stop):
        run_training(get_preset(preset), out_dir=tmp_path / "run", callback=stop)
    rows = _numbers(tmp_path / "run" / "metrics.jsonl")
    pinned = PINNED["rows"][preset]
    assert [(r["stage"], r["iteration"]) for r in rows] == \
        [(r["stage"], r["iteration"]) for r in pinned]
    for a, b in zip(rows, pinned, strict=True):
        assert sorted(a) == sorted(b)
        keys = [k for k in sorted(b) if k != "stage"]
        _assert_same(torch.tensor([a[k] for k in keys], dtype=torch.float64),
                     torch.tensor([b[k] for k in keys], dtype=torch.float64),
                     f"{preset} row {b}")


def test_an_old_layout_is_upgraded_on_load_with_one_warning(tmp_path, caplog):
    run = tmp_path / "old"
    shutil.copytree(CHECKPOINTS / "gan" / "full", run)
    stored = json.loads((run / "config.json").read_text())["config"]
    assert "family" not in stored and stored["gan"] is True  # the flat layout of then
    with caplog.at_level("WARNING", logger="gmmn.families"):
        first, second = load_run(run), load_run(run)
    upgrades = [r for r in caplog.records if "layout before model families" in r.getMessage()]
    assert len(upgrades) == 1 and "family gan" in upgrades[0].getMessage()
    assert first.config == second.config and first.config.family == "gan"
    assert first.config.model.disc_hidden == (16,)  # the family's own section


def test_every_old_flat_preset_upgrades_to_todays_preset():
    from gmmn.families import config_from_dict
    from gmmn.presets import PRESETS

    old = json.loads((FIXTURES / "presets_flat.json").read_text())
    assert set(old) <= set(PRESETS) and len(old) == 22  # presets added since are new
    for name, flat in old.items():
        upgraded = config_from_dict(flat, source=f"preset {name}")
        assert upgraded.override(**CHANGED_ON_PURPOSE.get(name, {})) == PRESETS[name], name


# Presets whose settings changed on purpose since the fixture, and the new values: the
# tabular preset (data no preset describes) puts discrete columns' samples on their levels
# (issue 23); the paper presets have not changed.
CHANGED_ON_PURPOSE = {"tabular-gmmn": {"discrete_levels": 10}}
