"""The DBN, stacked CAE and deep GSN baselines through the shared machinery: presets, the
training loop's stages, run files, sampling by their chains from training rows, evaluation
and ``gmmn reproduce`` rows (the models themselves: tests/test_baselines_*.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gmmn.api import load_run
from gmmn.config import TrainConfig
from gmmn.errors import ConfigError, DataError
from gmmn.families import config_from_dict, switch_family
from gmmn.families.chain import annealed
from gmmn.families.gsn import AveragedMomentumSGD
from gmmn.presets import PRESETS, get_preset
from gmmn.reproduce import PAPER_TABLE, available_models, plan, scale_iterations, train_command
from gmmn.training.run import load_splits, run_training

BASELINE_PRESETS = ("digits-dbn", "digits-scae", "digits-gsn")
# Tiny sizes: two greedy stages for dbn and scae, a checkpoint inside each stage.
TINY = {"iterations": 10, "baseline_hidden": (12, 6), "data_batch_size": 20,
        "checkpoint_every": 3, "log_every": 2, "sample_every": 0}
STAGES = {"digits-dbn": ["rbm-1", "rbm-2"], "digits-scae": ["cae-1", "cae-2"],
          "digits-gsn": ["gsn"]}


def tiny(name: str, **extra) -> TrainConfig:
    cfg = get_preset(name).override(**{**TINY, **extra})
    if cfg.family == "gsn":
        cfg = cfg.override(anneal_every=3)  # the annealed lr in a short run
    return cfg


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_presets_follow_the_recipes_of_docs_baselines():
    dbn, scae, gsn = (get_preset(f"mnist-{m}") for m in ("dbn", "scae", "gsn"))
    assert (dbn.family, dbn.baseline_hidden, dbn.pcd, dbn.cd_k, dbn.lr, dbn.momentum,
            dbn.anneal_every, dbn.anneal_factor, dbn.init_std, dbn.data_batch_size,
            dbn.iterations) == ("dbn", (1000, 1000), True, 1, 0.05, 0.5, 550, 0.95, 0.01, 100,
                                50 * 550)
    assert (scae.contraction, scae.lr, scae.data_batch_size, scae.iterations,
            scae.chain_noise, scae.chain_noise_space) == (0.1, 0.001, 10, 200 * 5500, 1.0,
                                                          "hidden")
    assert (gsn.baseline_hidden, gsn.walkbacks, gsn.gsn_cost, gsn.gsn_input_noise,
            gsn.gsn_hidden_noise, gsn.lr, gsn.momentum, gsn.anneal_every, gsn.anneal_factor,
            gsn.iterations) == ((1500, 1500), 4, "bce", 0.4, 2.0, 0.25, 0.5, 550, 0.995,
                                1000 * 550)
    for cfg in (dbn, scae, gsn):  # the GSN code's sampler: one chain, consecutive states
        assert (cfg.chains, cfg.burn_in, cfg.thin) == (1, 0, 1)
        for prefix in ("fashion-mnist", "digits"):
            assert PRESETS[f"{prefix}-{cfg.family}"].family == cfg.family
    assert get_preset("fashion-mnist-gsn") == dataclasses.replace(
        gsn, preset="fashion-mnist-gsn", dataset="fashion-mnist")
    assert all(PRESETS[n].family in ("gmmn", "gmmn-ae", "gan", "cgmmn", "cgmmn-ae")
               for n in PRESETS
               if not n.endswith(("-dbn", "-scae", "-gsn")))


def test_config_refuses_bad_baseline_settings():
    base = get_preset("digits-dbn")
    with pytest.raises(ConfigError, match="unknown model family 'vae'"):
        switch_family(base, "vae")
    with pytest.raises(ConfigError, match="--sigmas is not a setting of the dbn family"):
        base.override(sigmas=(1.0,))
    with pytest.raises(ConfigError, match="--thin must be positive"):
        base.override(thin=0)
    with pytest.raises(ConfigError, match="--gsn-cost"):
        base.override(gsn_cost="l1")
    # A config written before these fields existed loads with today's defaults.
    old = get_preset("digits-gmmn").to_dict()
    del old["sampling"]["chains"], old["model"]["late_momentum"]
    assert config_from_dict(old) == get_preset("digits-gmmn")


@pytest.mark.integration
@pytest.mark.parametrize("name", BASELINE_PRESETS)
def test_preset_trains_and_samples_by_its_chain(name, tmp_path):
    cfg = tiny(name)
    result = run_training(cfg, out_dir=tmp_path)
    assert result.checkpoint["done"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert list(dict.fromkeys(r["stage"] for r in rows)) == STAGES[name]
    assert all(np.isfinite([v for k, v in r.items() if k.startswith("loss")]).all()
               for r in rows)
    if cfg.family == "gsn":  # lr * 0.995 every 3 iterations
        assert rows[-1]["lr"] == pytest.approx(0.25 * 0.995 ** 3)
    assert (tmp_path / "samples.png").exists()
    run = load_run(tmp_path)
    assert run.prior_dim is None and run.sampler().settings is not None
    x = run.sample(25, seed=3)
    assert x.shape == (25, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, run.sample(25, seed=3))  # the seed fixes starts and chain
    assert not torch.equal(x, run.sample(25, seed=4))
    # The chain starts from the run's training split, loaded from its config.
    assert torch.equal(run.sampler().rows(), load_splits(cfg).train)
    other = run.sampler(chains=5, burn_in=2, thin=3)
    assert other.settings.chains == 5 and run.sampler().settings.chains == 1
    assert run.config.chains == 1  # the run's stored settings are untouched
    assert other.sample(12, seed=0).shape == (12, 64)
    with pytest.raises(DataError, match="no prior"):
        run.decode_prior(torch.zeros(2, 10))


@pytest.mark.integration
def test_chains_start_only_from_the_training_rows(tmp_path):
    cfg = tiny("digits-gsn", iterations=2)
    run_training(cfg, out_dir=tmp_path)
    splits = load_splits(cfg)
    run = load_run(tmp_path)
    with pytest.raises(DataError, match="training split"):
        run.sampler(rows=splits.test).sample(1, seed=0)  # never start at a test image
    sampler = run.sampler(rows=splits.train)
    assert torch.equal(sampler.rows(), splits.train)
    # One chain, no burn-in, p of every step: with the noise off, the first sample is the
    # one-step reconstruction of the training row that the seed picks.
    run.model.net.input_noise, run.model.net.hidden_noise_std = 0.0, 0.0
    start = splits.train[torch.randperm(len(splits.train),
                                        generator=torch.Generator().manual_seed(0))[:1]]
    expected = run.model.net.sample(1, init=start, generator=torch.Generator())
    assert torch.allclose(sampler.sample(1, seed=0), expected)


@pytest.mark.integration
def test_gmmn_runs_refuse_chain_settings(tmp_path):
    cfg = get_preset("digits-gmmn").override(iterations=2, hidden=(8,),
                              sample_batch_size=16, data_batch_size=16, sample_every=0)
    run_training(cfg, out_dir=tmp_path)
    run = load_run(tmp_path)
    assert run.sampler(chains=None) is run.sampler()
    with pytest.raises(ConfigError, match="--chains"):
        run.sampler(chains=3)


def test_averaged_momentum_and_annealing_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AveragedMomentumSGD([p], lr=0.5, momentum=0.5)
    b = torch.zeros(2)
    expected = p.detach().clone()
    for g, lr in ((torch.tensor([1.0, 2.0]), 0.5), (torch.tensor([-3.0, 0.5]), 0.25)):
        opt.lr = lr
        p.grad = g.clone()
        opt.step()
        b = 0.5 * b + 0.5 * g
        expected = expected - lr * b
        assert torch.allclose(p.detach(), expected)
    schedule = annealed(lr=0.25, momentum=0.5, every=550, factor=0.995)
    assert schedule(1) == schedule(550) == (0.25, 0.5)
    assert schedule(551)[0] == pytest.approx(0.25 * 0.995)
    assert schedule(1101)[0] == pytest.approx(0.25 * 0.995 ** 2)
    assert annealed(lr=0.1, momentum=0.0, every=0, factor=0.5)(10 ** 6) == (0.1, 0.0)


@pytest.mark.integration
def test_sample_and_evaluate_cli_on_a_baseline_run(tmp_path, monkeypatch, capsys):
    from gmmn.cli import main

    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    run_training(tiny("digits-scae"), out_dir=run_dir)
    assert main(["sample", "--run", str(run_dir), "--n", "30", "--chains", "3", "--burn-in",
                 "4", "--thin", "2", "--chain-noise", "0.5", "--out",
                 str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (30, 64)
    import gmmn.api as api

    seen, real = [], api.load_splits
    monkeypatch.setattr(api, "load_splits", lambda cfg: seen.append(cfg.data_dir) or real(cfg))
    assert main(["sample", "--run", str(run_dir), "--n", "5", "--data-dir", str(tmp_path / "d"),
                 "--out", str(tmp_path / "d.npy")]) == 0
    assert seen == [str(tmp_path / "d")]  # the chains' starting rows came from --data-dir
    assert main(["evaluate", "--run", str(run_dir), "--metrics", "parzen,interpolation",
                 "--n-samples", "40", "--chains", "4", "--thin", "2"]) == 0
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert np.isfinite(report["parzen"]["mean"]) and report["parzen"]["n_samples"] == 40
    assert "skipped" in report["interpolation"]
    assert (report["chain"]["chains"], report["chain"]["thin"]) == (4, 2)  # the flags used
    assert "Parzen" in capsys.readouterr().out


@pytest.mark.integration
def test_evaluate_chooses_the_cae_chain_noise_on_validation(tmp_path, monkeypatch, capsys):
    from gmmn.cli import main

    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    run_training(tiny("digits-scae"), out_dir=run_dir)
    common = ["evaluate", "--run", str(run_dir), "--metrics", "parzen", "--n-samples", "40",
              "--chains", "4"]
    assert main([*common, "--chain-noise", "3,0.2", "--out", str(tmp_path / "g/report.json")]
                ) == 0
    report = json.loads((tmp_path / "g" / "report.json").read_text())
    chosen = report["chain"]["noise_selection"]["chosen"]
    scores = report["chain"]["noise_selection"]["validation"]
    assert set(scores) == {"0.2", "3.0"} and report["chain"]["chain_noise"] == chosen
    assert chosen == max((0.2, 3.0), key=lambda v: scores[str(v)]["validation_ll"])
    assert "chosen on validation" in (tmp_path / "g" / "report.md").read_text()
    # The same score as evaluating with the chosen value given alone (same seeds, same chains).
    assert main([*common, "--chain-noise", str(chosen), "--out",
                 str(tmp_path / "one/report.json")]) == 0
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    assert one["parzen"]["mean"] == report["parzen"]["mean"]
    assert "noise_selection" not in one["chain"]
    capsys.readouterr()
    dbn_dir = tmp_path / "dbn"
    run_training(tiny("digits-dbn"), out_dir=dbn_dir)
    assert main(["evaluate", "--run", str(dbn_dir), "--chain-noise", "0.1,1"]) == 2
    assert "only chosen for stacked CAE runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error
        main(["evaluate", "--run", str(dbn_dir), "--chain-noise", "0.1,x"])
    assert "comma-separated numbers, got '0.1,x'" in capsys.readouterr().err


def test_reproduce_plans_baseline_rows_only_when_asked():
    assert available_models("digits") == ("gmmn", "gmmn-ae", "gan")  # the default table
    assert available_models("mnist", baselines=True)[-3:] == ("dbn", "scae", "gsn")
    p = plan("mnist", out="x", models=("dbn", "scae", "gsn"), quick=True)
    rows = {m.label: m for m in p.models}
    assert [m.label for m in p.models] == ["DBN", "Stacked CAE", "Deep GSN"]
    for label in rows:
        assert PAPER_TABLE[rows[label].paper_row][:2] == {
            "DBN": (138, 2), "Stacked CAE": (121, 1.6), "Deep GSN": (214, 1.1)}[label]
    gsn = rows["Deep GSN"].configs[0]
    assert gsn.iterations == round(550000 * 0.025) and gsn.anneal_every == round(550 * 0.025)
    assert "late_from" not in gsn.flat()  # not a setting of the GSN's family
    cmd = train_command(gsn, p.out)
    assert "--iterations 13750" in cmd and "--anneal-every 14" in cmd
    assert scale_iterations(get_preset("digits-dbn"), 0.5).iterations == 1000


def test_reproduce_chain_flags_are_checked():
    from gmmn.reproduce import eval_dir_name, evaluate_command

    with pytest.raises(ConfigError, match="names none of them"):
        plan("mnist", out="x", models=("gmmn",), chain={"chains": 100})
    with pytest.raises(ConfigError, match="--burn-in must be an integer >= 0"):
        plan("mnist", out="x", models=("dbn",), chain={"burn_in": -1})
    with pytest.raises(ConfigError, match="--thin must be an integer >= 1"):
        plan("mnist", out="x", models=("dbn",), chain={"thin": 0})
    p = plan("mnist", out="x", models=("dbn",), chain={"chains": 100, "thin": 10})
    assert p.chain == {"chains": 100, "thin": 10}
    assert eval_dir_name(p.chain) == "eval-chains-100-thin-10" and eval_dir_name({}) == "eval"
    cmd = evaluate_command(Path("mnist-dbn/seed-0"), n_samples=10000, seed=0, data_dir=None,
                           chain=p.chain)
    assert cmd.endswith("--chains 100 --thin 10 --out "
                        "mnist-dbn/seed-0/eval-chains-100-thin-10/report.json")


@pytest.mark.slow  # three tiny baselines trained and fully evaluated: ~15 s
def test_reproduce_digits_baseline_rows(tmp_path, monkeypatch, capsys):
    from gmmn.cli import main

    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "repro"
    code = main(["reproduce", "--dataset", "digits", "--quick", "--models", "dbn,scae,gsn",
                 "--iterations-scale", "0.01", "--n-samples", "60", "--out", str(out)])
    assert code == 0
    table = json.loads((out / "table.json").read_text())
    assert [r["preset"] for r in table["rows"]] == ["digits-dbn", "digits-scae", "digits-gsn"]
    for row in table["rows"]:
        assert np.isfinite(row["runs"][0]["parzen"]["mean"])
        assert row["paper_mnist"]["mean"] == PAPER_TABLE[row["paper_row"]][0]
    assert "| DBN (`digits-dbn`) |" in capsys.readouterr().out
    cae = table["rows"][1]["runs"][0]  # its chain noise chosen on validation from the grid
    assert set(cae["chain_noise_selection"]["validation"]) == {
        "0.01", "0.03", "0.1", "0.3", "1.0", "3.0", "10.0", "30.0", "100.0"}
    assert "--chain-noise 0.01,0.03,0.1,0.3,1,3,10,30,100" in cae["commands"][1]
    assert table["rows"][0]["runs"][0]["chain_noise_selection"] is None
    assert "chosen on validation Parzen" in (out / "table.md").read_text()

    # The same trained runs under another chain protocol: a second report beside the first,
    # which stays as it was, and a command that recomputes the new one.
    first = (out / "digits-dbn/seed-0/eval/report.json").read_bytes()
    trained = (out / "digits-dbn/seed-0/checkpoint.pt").stat().st_mtime_ns
    assert main(["reproduce", "--dataset", "digits", "--quick", "--models", "dbn",
                 "--iterations-scale", "0.01", "--n-samples", "60", "--out", str(out),
                 "--chains", "3", "--burn-in", "4", "--thin", "2"]) == 0
    assert (out / "digits-dbn/seed-0/checkpoint.pt").stat().st_mtime_ns == trained  # kept
    assert (out / "digits-dbn/seed-0/eval/report.json").read_bytes() == first
    assert len(json.loads((out / "table.json").read_text())["rows"]) == 3  # the first table
    row = json.loads((out / "table-chains-3-burn-in-4-thin-2.json").read_text())["rows"][0]
    assert row["chain"] == {"chains": 3, "burn_in": 4, "thin": 2}
    run = row["runs"][0]
    assert run["report"] == "digits-dbn/seed-0/eval-chains-3-burn-in-4-thin-2/report.json"
    report = json.loads((out / run["report"]).read_text())
    assert (report["chain"]["chains"], report["chain"]["burn_in"], report["chain"]["thin"]) == (
        3, 4, 2)
    assert "| DBN (`digits-dbn`; 3 chains, burn-in 4, thin 2) |" in (
        out / "table-chains-3-burn-in-4-thin-2.md").read_text()
    cmd = run["commands"][1].split()
    assert cmd[:2] == ["gmmn", "evaluate"]
    again = tmp_path / "again" / "report.json"
    cmd[cmd.index("--out") + 1] = str(again)
    cmd[cmd.index("--run") + 1] = str(out / cmd[cmd.index("--run") + 1])
    assert main(cmd[1:]) == 0
    assert json.loads(again.read_text())["parzen"]["mean"] == run["parzen"]["mean"]


@pytest.mark.integration
def test_baselines_refuse_data_outside_the_unit_interval(tmp_path):
    with pytest.raises(ConfigError, match="--standardize"):
        run_training(tiny("digits-dbn", standardize=True), out_dir=tmp_path / "a")
    x = np.random.default_rng(0).normal(size=(50, 6)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ConfigError, match="outside"):
        run_training(tiny("digits-gsn", dataset=str(tmp_path / "x.npy")), out_dir=tmp_path / "b")


@pytest.mark.integration
def test_the_estimator_api_refuses_baseline_presets():
    from gmmn.api import GMMN

    with pytest.raises(ConfigError, match="gmmn train --preset digits-gsn"):
        GMMN(preset="digits-gsn").fit(np.random.default_rng(0).random((30, 8)))
