"""The stacked CAE row (Rifai et al. 2011/2012; the paper's table quotes 121 +- 1.6):
contractive autoencoder layers trained greedily, ``cae-1`` ... ``cae-K``, each on the codes of
the layers below it, minimising summed binary cross-entropy plus ``contraction`` times
||dh/dx||_F^2. Samples come from the CAE chain of the top layer, whose noise
(``--chain-noise``, in hidden or input space) is a sampling setting that evaluation may choose
on validation (docs/baselines.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gmmn.baselines.cae import StackedCAE, cae_loss
from gmmn.config import NONNEGATIVE, TrainConfig, setting
from gmmn.families.chain import BaselineSettings, ChainFamily, ChainModel, GreedyStage
from gmmn.training.loop import Part
from gmmn.training.optim import ReleasedSGD


@dataclass(frozen=True)
class SCAESettings(BaselineSettings):
    contraction: float = setting(0.1, "scae: weight lambda of the contractive penalty "
                                      "||dh/dx||_F^2", NONNEGATIVE)


class SCAEModel(ChainModel):
    @torch.no_grad()
    def chain_sample(self, n, *, starts, sampling, generator, level=None):
        top = self.depth - 1 if level is None else level
        return self.net.sample(n, init=starts, burn_in=sampling.burn_in, thin=sampling.thin,
                               generator=generator, noise_std=sampling.chain_noise,
                               noise=sampling.chain_noise_space, level=top)


class CAEStage(GreedyStage):
    """CAE layer ``level`` on the codes of the layers below it (greedy)."""

    prefix = "cae"

    def __init__(self, model: SCAEModel, level: int, data: torch.Tensor,
                 cfg: TrainConfig) -> None:
        super().__init__(model, level, data, cfg)
        self.layer = model.net.layers[level]
        opt = ReleasedSGD(self.layer.parameters(), lr=cfg.model.lr, momentum=cfg.model.momentum)
        self.parts = (Part("reconstruction", opt, self.schedule, self.loss,
                           advice="lower --lr"),)

    def loss(self, t: int) -> torch.Tensor:
        return cae_loss(self.layer, self.sampler.next(), contraction=self.settings.contraction)


class SCAEFamily(ChainFamily):
    name = "scae"
    settings = SCAESettings
    label = "the scae baseline"
    tunable_noise = True

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return [f"cae-{k + 1}" for k in range(len(cfg.model.baseline_hidden))]

    def make_model(self, cfg, sizes, rng) -> SCAEModel:
        return SCAEModel(StackedCAE(sizes, generator=rng))

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return CAEStage(model, int(name.rsplit("-", 1)[1]) - 1, train, cfg)


FAMILY = SCAEFamily()
