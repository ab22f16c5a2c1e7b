"""The deep GSN row (Bengio et al. 2014; the paper's table quotes 214 +- 1.1): one stage,
``gsn``, on the walkback cost of the whole GSN (the sum of its ``walkbacks`` reconstruction
terms), optimised with the released code's averaged momentum (:class:`AveragedMomentumSGD`)
and its lr annealing; samples come from its own chain (docs/baselines.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gmmn.baselines.gsn import GSN, walkback_loss
from gmmn.config import NONNEGATIVE, POSITIVE_INT, TrainConfig, setting
from gmmn.errors import ConfigError
from gmmn.families.chain import BaselineSettings, ChainFamily, ChainModel, ChainStage
from gmmn.training.loop import Part
from gmmn.training.optim import MomentumSGD

GSN_COSTS = ("bce", "mse")


@dataclass(frozen=True)
class GSNSettings(BaselineSettings):
    walkbacks: int = setting(4, "gsn: walkback steps per update, one reconstruction term "
                                "each", POSITIVE_INT)
    gsn_cost: str = setting("bce", "gsn: reconstruction cost, bce or mse")
    gsn_input_noise: float = setting(0.4, "gsn: salt-and-pepper probability on the visible "
                                          "layer", (0, 1, True, True))
    gsn_hidden_noise: float = setting(2.0, "gsn: std of the Gaussian noise on hidden layers "
                                           "(not the first)", NONNEGATIVE)

    def check(self) -> None:
        super().check()
        if self.gsn_cost not in GSN_COSTS:
            raise ConfigError(f"unknown --gsn-cost {self.gsn_cost!r}; choose one of {GSN_COSTS}")


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


class GSNModel(ChainModel):
    @torch.no_grad()
    def chain_sample(self, n, *, starts, sampling, generator, level=None):
        return self.net.sample(n, init=starts, burn_in=sampling.burn_in, thin=sampling.thin,
                               generator=generator)


class GSNStage(ChainStage):
    """The whole GSN on the walkback cost (sum of its ``walkbacks`` terms)."""

    def __init__(self, model: GSNModel, data: torch.Tensor, cfg: TrainConfig) -> None:
        super().__init__("gsn", model, data, data, cfg)
        opt = AveragedMomentumSGD(model.net.parameters(), lr=cfg.model.lr,
                                  momentum=cfg.model.momentum)
        self.parts = (Part("walkback", opt, self.schedule, self.loss, advice="lower --lr"),)

    def loss(self, t: int) -> torch.Tensor:
        total, _terms = walkback_loss(self.model.net, self.sampler.next(),
                                      walkbacks=self.settings.walkbacks,
                                      cost=self.settings.gsn_cost, generator=self.rng)
        return total


class GSNFamily(ChainFamily):
    name = "gsn"
    settings = GSNSettings
    label = "the gsn baseline"

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return ["gsn"]

    def make_model(self, cfg, sizes, rng) -> GSNModel:
        m = cfg.model
        return GSNModel(GSN(sizes, input_noise=m.gsn_input_noise,
                            hidden_noise_std=m.gsn_hidden_noise, generator=rng))

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return GSNStage(model, train, cfg)


FAMILY = GSNFamily()
