"""The DBN row (Hinton et al. 2006; the paper's table quotes 138 +- 2): a stack of RBMs
trained greedily, ``rbm-1`` ... ``rbm-K``, each on the mean-field up-pass of the data through
the RBMs below it. The loss is :func:`gmmn.baselines.rbm.cd_loss`, whose gradient is the
PCD-k (or CD-k) estimate; with ``pcd`` the persistent chains (one per batch row) are part of
the stage's state, so a resumed run is bit-identical. Samples come from the top RBM's Gibbs
chain, passed down (docs/baselines.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gmmn.baselines.dbn import DBN
from gmmn.baselines.rbm import PersistentChains, cd_loss, cd_negatives
from gmmn.config import POSITIVE, POSITIVE_INT, TrainConfig, setting
from gmmn.families.chain import BaselineSettings, ChainFamily, ChainModel, GreedyStage
from gmmn.training.loop import Part
from gmmn.training.optim import ReleasedSGD

RBM_INIT_STD = 0.01  # Hinton's practical guide; used when --init-std is none


@dataclass(frozen=True)
class DBNSettings(BaselineSettings):
    # None: RBM_INIT_STD
    init_std: float | None = setting(0.1, "initial RBM weights init_std * N(0, 1) ('none': "
                                          "0.01)", POSITIVE)
    cd_k: int = setting(1, "dbn: Gibbs steps per update of the negative phase (CD-k or PCD-k)",
                        POSITIVE_INT)
    # persistent chains, one per row of a batch (SML; Tieleman 2008)
    pcd: bool = setting(True, "dbn: persistent chains (PCD / SML), one per batch row; "
                              "--no-pcd: CD-k")


class DBNModel(ChainModel):
    @torch.no_grad()
    def chain_sample(self, n, *, starts, sampling, generator, level=None):
        top = self.depth - 1 if level is None else level
        dbn = self.net if top == self.depth - 1 else _truncated(self.net, top)
        return dbn.sample(n, init=starts, burn_in=sampling.burn_in, thin=sampling.thin,
                          generator=generator)


def _truncated(dbn: DBN, top: int) -> DBN:
    """A DBN made of RBMs 0..top of ``dbn`` (the same parameters, not copies)."""
    sub = DBN.__new__(DBN)
    nn.Module.__init__(sub)
    sub.sizes = dbn.sizes[:top + 2]
    sub.rbms = nn.ModuleList(dbn.rbms[:top + 1])
    return sub


class RBMStage(GreedyStage):
    """RBM ``level`` of the DBN on the mean-field up-pass of the data (greedy)."""

    prefix = "rbm"

    def __init__(self, model: DBNModel, level: int, data: torch.Tensor,
                 cfg: TrainConfig) -> None:
        super().__init__(model, level, data, cfg)
        self.rbm = model.net.rbms[level]
        self.chains = (PersistentChains(self.sampler.batch_size, self.rbm.n_visible)
                       .to(data.device) if cfg.model.pcd else None)
        opt = ReleasedSGD(self.rbm.parameters(), lr=cfg.model.lr, momentum=cfg.model.momentum)
        self.parts = (Part("cd", opt, self.schedule, self.loss, advice="lower --lr"),)

    def loss(self, t: int) -> torch.Tensor:
        v = self.sampler.next()
        k = self.settings.cd_k
        if self.chains is not None:
            neg = self.chains.advance(self.rbm, v, k=k, generator=self.rng)
        else:
            neg = cd_negatives(self.rbm, v, k=k, generator=self.rng)
        return cd_loss(self.rbm, v, neg)

    def state_dict(self) -> dict:
        chains = None if self.chains is None else {
            k: v.detach().cpu().clone() for k, v in self.chains.state_dict().items()}
        return {**super().state_dict(), "chains": chains}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.chains is not None:
            self.chains.load_state_dict(state["chains"])


class DBNFamily(ChainFamily):
    name = "dbn"
    settings = DBNSettings
    label = "the dbn baseline"

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return [f"rbm-{k + 1}" for k in range(len(cfg.model.baseline_hidden))]

    def make_model(self, cfg, sizes, rng) -> DBNModel:
        std = RBM_INIT_STD if cfg.model.init_std is None else cfg.model.init_std
        return DBNModel(DBN(sizes, init_std=std, generator=rng))

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return RBMStage(model, int(name.rsplit("-", 1)[1]) - 1, train, cfg)


FAMILY = DBNFamily()
