"""Training stages of the DBN, stacked CAE and deep GSN baselines for the one loop
(:func:`gmmn.training.loop.train_loop`); recipes and sources in docs/baselines.md.

* :class:`RBMStage` (``rbm-1`` ... ``rbm-K``): RBM l of the DBN on ``dbn.up(x, l)``, greedy;
  the loss is :func:`cd_loss`, whose gradient is the PCD-k (or CD-k) estimate.
* :class:`CAEStage` (``cae-1`` ... ``cae-K``): CAE layer l on ``stack.up(x, l)``, greedy;
  summed binary cross-entropy plus ``contraction`` times ||dh/dx||_F^2.
* :class:`GSNStage` (``gsn``): the walkback cost of the whole GSN, optimised with the
  released code's averaged momentum (:class:`AveragedMomentumSGD`) and its lr annealing.

Like every stage, each owns its generators (seeded from the run seed and its name), its data
order and, for PCD, its persistent chains, and hands them to the checkpoint, so a resumed
run is bit-identical to an unbroken one.
"""

from __future__ import annotations

import torch

from gmmn.baselines.cae import cae_loss
from gmmn.baselines.gsn import walkback_loss
from gmmn.baselines.model import BaselineModel, chain_starts
from gmmn.baselines.rbm import PersistentChains, cd_loss, cd_negatives
from gmmn.config import TrainConfig
from gmmn.training.loop import Part, Stage
from gmmn.training.optim import MomentumSGD, ReleasedSGD, Schedule
from gmmn.training.stages import ENCODE_CHUNK, BatchSampler, SampledStage, make_generator


class AveragedMomentumSGD(MomentumSGD):
    """The deep GSN code's momentum: ``b <- m b + (1 - m) g; theta <- theta - lr b``.

    Not :class:`ReleasedSGD` with a rescaled lr: the buffer holds gradients, not steps, so
    when the lr is annealed the old gradients move at the new lr (as in the GSN code).
    """

    @torch.no_grad()
    def step(self) -> None:
        for p, b in zip(self.params, self.buffers, strict=True):
            if p.grad is None:
                continue
            b.mul_(self.momentum).add_(p.grad, alpha=1 - self.momentum)
            p.add_(b, alpha=-self.lr)


def annealed(*, lr: float, momentum: float, every: int, factor: float) -> Schedule:
    """lr * factor^floor((t - 1) / every) at iteration t (from 1); constant when every is 0.

    The GSN code multiplied its lr by 0.995 after every epoch: ``every`` = batches per epoch.
    """

    def schedule(t: int) -> tuple[float, float]:
        if not every:
            return lr, momentum
        return lr * factor ** ((t - 1) // every), momentum

    return schedule


def stage_names(cfg: TrainConfig) -> list[str]:
    """``rbm-1``.. (dbn), ``cae-1``.. (scae), one per hidden layer; ``gsn``."""
    if cfg.baseline == "gsn":
        return ["gsn"]
    prefix = "rbm" if cfg.baseline == "dbn" else "cae"
    return [f"{prefix}-{k + 1}" for k in range(len(cfg.baseline_hidden))]


@torch.no_grad()
def _up(up, x: torch.Tensor, level: int, chunk: int = ENCODE_CHUNK) -> torch.Tensor:
    if level == 0:
        return x  # the first layer trains on the data itself: no copy
    return torch.cat([up(x[i:i + chunk], level) for i in range(0, len(x), chunk)])


class _BaselineStage(SampledStage):
    """One optimiser, a batch sampler, one noise generator, and progress pictures drawn from
    the model's chain (started at training rows) up to this stage's layer."""

    level: int | None = None

    def __init__(self, name: str, model: BaselineModel, data: torch.Tensor,
                 inputs: torch.Tensor, cfg: TrainConfig) -> None:
        self.name, self.iterations = name, cfg.iterations
        self.model, self.data, self.cfg = model, data, cfg
        self.rng = make_generator(cfg.seed, name, "noise")
        self.sampler = BatchSampler(inputs, cfg.data_batch_size,
                                    make_generator(cfg.seed, name, "data"))
        self.schedule = annealed(lr=cfg.lr, momentum=cfg.momentum, every=cfg.anneal_every,
                                 factor=cfg.anneal_factor)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        starts = chain_starts(self.data, self.cfg.chains, generator)
        return self.model.chain_sample(n, starts=starts, cfg=self.cfg, generator=generator,
                                       level=self.level)


class RBMStage(_BaselineStage):
    """RBM ``level`` of the DBN on the mean-field up-pass of the data (greedy)."""

    def __init__(self, model: BaselineModel, level: int, data: torch.Tensor,
                 cfg: TrainConfig) -> None:
        dbn = model.net
        super().__init__(f"rbm-{level + 1}", model, data, _up(dbn.up, data, level), cfg)
        self.level, self.rbm = level, dbn.rbms[level]
        self.chains = (PersistentChains(self.sampler.batch_size, self.rbm.n_visible)
                       .to(data.device) if cfg.pcd else None)
        opt = ReleasedSGD(self.rbm.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        self.parts = (Part("cd", opt, self.schedule, self.loss,
                           advice="lower --lr"),)

    def loss(self, t: int) -> torch.Tensor:
        v = self.sampler.next()
        if self.chains is not None:
            neg = self.chains.advance(self.rbm, v, k=self.cfg.cd_k, generator=self.rng)
        else:
            neg = cd_negatives(self.rbm, v, k=self.cfg.cd_k, generator=self.rng)
        return cd_loss(self.rbm, v, neg)

    def state_dict(self) -> dict:
        chains = None if self.chains is None else {
            k: v.detach().cpu().clone() for k, v in self.chains.state_dict().items()}
        return {**super().state_dict(), "chains": chains}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.chains is not None:
            self.chains.load_state_dict(state["chains"])


class CAEStage(_BaselineStage):
    """CAE layer ``level`` on the codes of the layers below it (greedy)."""

    def __init__(self, model: BaselineModel, level: int, data: torch.Tensor,
                 cfg: TrainConfig) -> None:
        stack = model.net
        super().__init__(f"cae-{level + 1}", model, data, _up(stack.up, data, level), cfg)
        self.level, self.layer = level, stack.layers[level]
        opt = ReleasedSGD(self.layer.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        self.parts = (Part("reconstruction", opt, self.schedule, self.loss,
                           advice="lower --lr"),)

    def loss(self, t: int) -> torch.Tensor:
        return cae_loss(self.layer, self.sampler.next(), contraction=self.cfg.contraction)


class GSNStage(_BaselineStage):
    """The whole GSN on the walkback cost (sum of its ``walkbacks`` terms)."""

    def __init__(self, model: BaselineModel, data: torch.Tensor, cfg: TrainConfig) -> None:
        super().__init__("gsn", model, data, data, cfg)
        opt = AveragedMomentumSGD(model.net.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        self.parts = (Part("walkback", opt, self.schedule, self.loss,
                           advice="lower --lr"),)

    def loss(self, t: int) -> torch.Tensor:
        total, _terms = walkback_loss(self.model.net, self.sampler.next(),
                                      walkbacks=self.cfg.walkbacks, cost=self.cfg.gsn_cost,
                                      generator=self.rng)
        return total


def build_stage(name: str, model: BaselineModel, data: torch.Tensor, cfg: TrainConfig
                ) -> Stage:
    if name == "gsn":
        return GSNStage(model, data, cfg)
    kind, k = name.rsplit("-", 1)
    if kind == "rbm":
        return RBMStage(model, int(k) - 1, data, cfg)
    return CAEStage(model, int(k) - 1, data, cfg)
