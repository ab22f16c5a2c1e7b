"""The GAN baseline (Goodfellow et al. 2014, the "Adversarial nets" row of the paper's table).

It plugs into the one training loop as a :class:`GanStage` with two parts, stepped in turn
every iteration as in Algorithm 1 of the GAN paper (k = 1):

* ``discriminator``: ascend log D(x) + log(1 - D(G(z))), i.e. minimise
  ``softplus(-D_logit(x)).mean() + softplus(D_logit(G(z))).mean()`` (binary cross-entropy);
* ``generator``: the non-saturating loss of the GAN paper (Sec. 3),
  ``-log D(G(z)) = softplus(-D_logit(G(z))).mean()``, on a fresh prior batch.

The generator is the GMMN's own network (:class:`gmmn.models.Generator`, 10-64-256-256-1024
with a sigmoid output on MNIST) so that the table compares training objectives, not
architectures; the GAN paper's generator (100-1200-1200-784) is ``--prior-dim 100 --hidden
1200,1200``. Both nets use the released-form SGD of :class:`gmmn.train.ReleasedSGD`, which is
also pylearn2's momentum rule (``inc <- m inc - lr g; p <- p + inc``), under the GAN paper's
schedule (:func:`gan_schedule`). Dropout masks, prior noise and data order come from the
stage's own generators, so a resumed run is bit-identical like every other stage.

Both losses are per-example means, so data-parallel training needs only the gradient
all-reduce of :class:`gmmn.train.Hooks`; nothing is gathered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmmn.config import TrainConfig
from gmmn.models import GenerativeModel
from gmmn.stages import BatchSampler, make_generator
from gmmn.train import Hooks, Part, ReleasedSGD, Schedule, Stage


class Adam:
    """``torch.optim.Adam`` behind the loop's optimiser interface (``lr``, ``momentum``,
    ``params``, ``zero_grad``, ``step``, ``state_dict``): ``momentum`` is Adam's beta1, and
    beta2 is :data:`ADAM_BETA2`. The GAN presets' alternative to plain SGD (``--gan-optimizer
    adam``), with the DCGAN settings (Radford et al. 2016): lr 2e-4, beta1 0.5.
    """

    def __init__(self, params, *, lr: float, momentum: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum = lr, momentum
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(momentum, ADAM_BETA2))

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for group in self.opt.param_groups:
            group["lr"], group["betas"] = self.lr, (self.momentum, ADAM_BETA2)
        self.opt.step()

    def state_dict(self) -> dict:
        state = self.opt.state_dict()["state"]
        return {"state": {int(k): {n: v.detach().cpu().clone() if torch.is_tensor(v) else v
                                   for n, v in s.items()} for k, s in state.items()}}

    def load_state_dict(self, state: dict) -> None:
        full = self.opt.state_dict()
        full["state"] = state["state"]
        self.opt.load_state_dict(full)


ADAM_BETA2 = 0.999
OPTIMIZERS = {"sgd": ReleasedSGD, "adam": Adam}


def gan_schedule(*, lr: float, momentum: float, final_momentum: float, momentum_ramp: int,
                 lr_decay: float, min_lr: float) -> Schedule:
    """The GAN paper's MNIST schedule per iteration t (from 1).

    lr_t = max(lr / lr_decay^(t-1), min_lr) (pylearn2's ExponentialDecay);
    m_t = momentum + (final_momentum - momentum) * min(1, (t-1) / momentum_ramp)
    (its MomentumAdjustor, counted in iterations instead of epochs).
    """

    def schedule(t: int) -> tuple[float, float]:
        lr_t = max(lr / lr_decay ** (t - 1), min_lr)
        frac = min(1.0, (t - 1) / momentum_ramp)
        return lr_t, momentum + (final_momentum - momentum) * frac

    return schedule


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       smoothing: float = 0.0) -> torch.Tensor:
    """-mean log D(x) - mean log(1 - D(G(z))), from logits (stable for any magnitude).

    ``smoothing`` > 0 is one-sided label smoothing (Salimans et al. 2016, Sec. 3.4): the target
    for real images becomes ``1 - smoothing``, so their term is the binary cross-entropy
    ``(1 - s) (-log D(x)) + s (-log(1 - D(x)))``, while generated images keep target 0. It caps
    how confident the discriminator is rewarded for being on real data, which keeps the
    generator's gradient alive when the discriminator would otherwise win outright.
    """
    real = F.softplus(-real_logits)
    if smoothing:
        real = (1 - smoothing) * real + smoothing * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -mean log D(G(z)) (GAN paper, Sec. 3)."""
    return F.softplus(-fake_logits).mean()


class GanStage(Stage):
    """Discriminator step, then generator step, every iteration (two parts, one loop)."""

    def __init__(self, model: GenerativeModel, data: torch.Tensor, cfg: TrainConfig, *,
                 name: str = "gan", hooks: Hooks | None = None) -> None:
        if model.discriminator is None:
            raise ValueError("a GAN stage needs a model built with gan=True")
        self.name, self.iterations = name, cfg.iterations
        self.model, self.cfg = model, cfg
        self.prior_rng = make_generator(cfg.seed, name, "prior")
        self.dropout_rng = make_generator(cfg.seed, name, "dropout")
        self.sampler = BatchSampler(data, cfg.data_batch_size,
                                    make_generator(cfg.seed, name, "data"))
        schedule = gan_schedule(lr=cfg.lr, momentum=cfg.momentum,
                                final_momentum=cfg.gan_final_momentum,
                                momentum_ramp=cfg.gan_momentum_ramp,
                                lr_decay=cfg.gan_lr_decay, min_lr=cfg.gan_min_lr)
        make_opt = OPTIMIZERS[cfg.gan_optimizer]
        d_opt = make_opt(model.discriminator.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        g_opt = make_opt(model.generator.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        advice = "lower --lr or use --gan-optimizer adam"
        self.parts = (Part("discriminator", d_opt, schedule, self.discriminator_loss,
                           advice=advice),
                      Part("generator", g_opt, schedule, self.generator_loss, advice=advice))
        # A diverged GAN keeps stepping on NaN weights, so checking where the logger reads
        # the losses anyway finds it without a device sync on the other iterations.
        self.check_every = cfg.log_every

    def _fake(self) -> torch.Tensor:
        gen = self.model.generator
        return gen(gen.sample_prior(self.cfg.sample_batch_size, self.prior_rng))

    def discriminator_loss(self, t: int) -> torch.Tensor:
        disc = self.model.discriminator
        with torch.no_grad():  # the generator is fixed during this step
            fake = self._fake()
        real = self.sampler.next()
        return discriminator_loss(disc(real, self.dropout_rng), disc(fake, self.dropout_rng),
                                  self.cfg.gan_label_smoothing)

    def generator_loss(self, t: int) -> torch.Tensor:
        # Gradients reach the discriminator's parameters too; its optimiser zeroes them
        # before its own next step, and this part's optimiser holds only the generator.
        return generator_loss(self.model.discriminator(self._fake(), self.dropout_rng))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict(),
                "prior_rng": self.prior_rng.get_state(),
                "dropout_rng": self.dropout_rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
        self.prior_rng.set_state(state["prior_rng"])
        self.dropout_rng.set_state(state["dropout_rng"])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.model.sample(n, generator=generator)
