"""Data-parallel training: K workers on gloo optimise exactly the single-process objective."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import SRC
from gmmn.errors import ConfigError
from gmmn.families import build_model, switch_family
from gmmn.families.gmmn import GMMNStage
from gmmn.presets import get_preset
from gmmn.training.distributed import (
    all_gather,
    check_config,
    data_parallel_hooks,
    env_world,
    from_main,
    launch,
)
from gmmn.training.loop import Hooks, train_loop
from gmmn.training.run import run_training

WORLD = 2
CFG = get_preset("digits-gmmn").override(iterations=6, hidden=(16, 32),
                          sample_batch_size=24, data_batch_size=20, device="cpu")
DIM = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data() -> torch.Tensor:
    return torch.rand(50, DIM, generator=torch.Generator().manual_seed(3))


def _one_step_then_train(hooks: Hooks) -> dict:
    """Loss and gradients of iteration 1 (as the optimiser sees them), then the weights after
    ``CFG.iterations`` iterations, of a GMMN stage run with ``hooks``."""
    model = build_model(CFG, DIM, unit_interval=True)
    hooks.broadcast(model)
    stage = GMMNStage(model, _data(), CFG, hooks=hooks)
    seen = {}

    def reduce_and_record(params):
        hooks.reduce_gradients(params)
        if "grads" not in seen:
            seen["grads"] = [p.grad.clone() for p in params]

    def record_loss(step):
        seen.setdefault("loss", step.losses["mmd"].clone())

    train_loop(stage, hooks=dataclasses.replace(hooks, reduce_gradients=reduce_and_record),
               on_step=record_loss)
    seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
    return seen


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        hooks = data_parallel_hooks()
        # The gather's backward sums over workers: a loss every worker computes alike gives
        # each worker WORLD times the gradient of its own rows.
        x = torch.full((3, 2), float(rank), requires_grad=True)
        w = torch.arange(WORLD * 6, dtype=torch.float32).reshape(WORLD * 3, 2)
        gathered = all_gather(x)
        (gathered * w).sum().backward()
        # A user error on worker 0 reaches every worker as the same exception.
        try:
            from_main(lambda: (_ for _ in ()).throw(ConfigError("bad flag on rank 0")))
            error = None
        except ConfigError as exc:
            error = str(exc)
        result = _one_step_then_train(hooks)
        torch.save({**result, "gathered": gathered.detach(), "x_grad": x.grad,
                    "error": error, "main": hooks.main}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_step_equals_one_process_and_workers_stay_identical(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = _one_step_then_train(Hooks())

    w = torch.arange(WORLD * 6, dtype=torch.float32).reshape(WORLD * 3, 2)
    for r, res in enumerate(ranks):
        assert torch.equal(res["gathered"][:, 0], torch.tensor([0.0, 0, 0, 1, 1, 1]))
        assert torch.equal(res["x_grad"], WORLD * w[3 * r:3 * r + 3])
        assert res["error"] == "bad flag on rank 0"
        assert res["main"] == (r == 0)

    loss_diff = max(abs(float(res["loss"] - single["loss"])) for res in ranks)
    grad_diff = max(float((g - s).abs().max()) for res in ranks
                    for g, s in zip(res["grads"], single["grads"], strict=True))
    print(f"max |loss diff| {loss_diff:.3g}, max |grad diff| {grad_diff:.3g}")
    assert loss_diff <= 1e-5
    assert grad_diff <= 1e-5
    assert max(float(g.abs().max()) for g in single["grads"]) > 1e-3  # a real gradient

    for k, v in ranks[0]["weights"].items():
        assert torch.equal(v, ranks[1]["weights"][k]), k  # workers never drift apart
        torch.testing.assert_close(v, single["weights"][k], atol=1e-5, rtol=0)


def test_distributed_config_checks_name_the_flag():
    with pytest.raises(ConfigError, match=r"--sample-batch-size 24 .* multiple of 5 \(e.g. 20 "
                                          r"or 25\)"):
        check_config(CFG.override(data_batch_size=25), 5)
    with pytest.raises(ConfigError, match="--data-batch-size 20 .* multiple of 3"):
        check_config(CFG.override(sample_batch_size=24), 3)
    with pytest.raises(ConfigError, match="use --device cuda"):
        check_config(CFG.override(device="cuda:1"), 2)
    with pytest.raises(ConfigError, match="baseline trains in one process"):
        check_config(switch_family(CFG, "dbn").override(baseline_hidden=(8,)), 2)
    check_config(switch_family(CFG, "dbn").override(baseline_hidden=(8,)), 1)
    with pytest.raises(ConfigError, match="GAN baseline trains in one process"):
        check_config(switch_family(CFG, "gan"), 2)
    check_config(switch_family(CFG, "gan"), 1)
    check_config(CFG, 2)
    check_config(CFG.override(sample_batch_size=7), 1)


def test_distributed_env_outside_torchrun_is_one_process():
    assert env_world({}) == (0, 1, 0)
    assert env_world({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(ConfigError, match="RANK=4"):
        env_world({"WORLD_SIZE": "4", "RANK": "4"})
    with launch({}) as hooks:
        assert hooks.main and not dist.is_initialized()
        x = torch.ones(3)
        assert hooks.shard(x) is x and hooks.gather(x) is x


FLAGS = ["--preset", "digits-gmmn", "--iterations", "20", "--sample-batch-size", "32",
         "--data-batch-size", "32", "--hidden", "16", "--checkpoint-every", "10",
         "--log-every", "5", "--sample-every", "0", "--device", "cpu"]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "gmmn", "train",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # launches torchrun with two workers: ~9 s
def test_distributed_cli_under_torchrun_writes_once_and_resumes(tmp_path):
    fresh = tmp_path / "fresh"
    done = _torchrun(*FLAGS, "--out", str(fresh))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained digits-gmmn") == 1
    # One worker reports progress (log lines: stderr is a pipe, not a terminal).
    assert done.stderr.count("gmmn: stage gmmn started") == 1, done.stderr
    files = {p.name for p in fresh.iterdir()}
    assert files - {"tensorboard", ".lock"} == {"config.json", "metrics.jsonl", "checkpoint.pt",
                                        "samples.png"}
    assert [r["iteration"] for r in _rows(fresh)] == [5, 10, 15, 20]  # one writer

    # A single process stops after the checkpoint at 10; two workers finish it.
    cfg = get_preset("digits-gmmn").override(iterations=20, sample_batch_size=32,
                              data_batch_size=32, hidden=(16,), checkpoint_every=10,
                              log_every=5, sample_every=0, device="cpu")

    class Stop(Exception):
        pass

    def stop_after_10(step):  # on_step checkpoints 10 after the callback: stop in 11
        if step.iteration == 11:
            raise Stop

    resumed = tmp_path / "resumed"
    with pytest.raises(Stop):
        run_training(cfg, out_dir=resumed, callback=stop_after_10)
    again = _torchrun("--resume", "--out", str(resumed))
    assert again.returncode == 0, again.stderr
    a, b = _rows(fresh), _rows(resumed)
    assert [r["iteration"] for r in b] == [5, 10, 15, 20]
    for ra, rb in zip(a, b, strict=True):
        assert abs(ra["loss"] - rb["loss"]) < 1e-5
    wa = torch.load(fresh / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(resumed / "checkpoint.pt", weights_only=True)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0)
