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
1200,1200``. Both nets use ``--gan-optimizer``: the released-form SGD of
:class:`gmmn.training.optim.ReleasedSGD`, which is also pylearn2's momentum rule
(``inc <- m inc - lr g; p <- p + inc``), under the GAN paper's schedule
(:func:`gmmn.training.optim.gan_schedule`), or Adam (the presets). Dropout masks, prior noise
and data order come from the stage's own generators, so a resumed run is bit-identical like
every other stage.

The GAN trains in one process: ``gmmn.training.distributed.check_config`` refuses it under
torchrun. Both losses are per-example means, so a data-parallel version would need only the
gradient all-reduce of :class:`gmmn.training.loop.Hooks`, but each worker would have to draw
its discriminator's dropout masks for its own shard, and matching a single process exactly
(as the GMMN's data-parallel stage does, tested) would take masks drawn for the global batch;
that is not built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmmn.config import TrainConfig
from gmmn.models import GenerativeModel
from gmmn.training.loop import Part, Stage
from gmmn.training.optim import OPTIMIZERS, gan_schedule
from gmmn.training.stages import BatchSampler, GeneratorSamples, make_generator


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


class GanStage(GeneratorSamples, Stage):
    """Discriminator step, then generator step, every iteration (two parts, one loop)."""

    def __init__(self, model: GenerativeModel, data: torch.Tensor, cfg: TrainConfig, *,
                 name: str = "gan") -> None:
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
        # the losses anyway finds it without a device sync on the other iterations; the loop
        # also checks the last iteration and the weights it leaves, so a run of fewer than
        # log_every iterations is checked too.
        self.check_every = cfg.log_every

    def _fake(self) -> torch.Tensor:
        gen = self.model.generator
        return gen(gen.sample_prior(self.cfg.sample_batch_size, self.prior_rng))

    def _noisy(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Instance noise (Sønderby et al. 2017; Arjovsky & Bottou 2017): real and generated
        images blurred by the same Gaussian, std ``gan_instance_noise * (1 - (t-1)/T)``, so
        their distributions overlap and the discriminator cannot separate them outright
        early on. Drawn from the dropout stream, which stays untouched when it is 0."""
        std = self.cfg.gan_instance_noise * (1 - (t - 1) / self.iterations)
        if std <= 0:
            return x
        noise = torch.randn(x.shape, generator=self.dropout_rng).to(x.device, x.dtype)
        return x + std * noise

    def discriminator_loss(self, t: int) -> torch.Tensor:
        disc = self.model.discriminator
        with torch.no_grad():  # the generator is fixed during this step
            fake = self._fake()
        real = self.sampler.next()
        return discriminator_loss(disc(self._noisy(real, t), self.dropout_rng),
                                  disc(self._noisy(fake, t), self.dropout_rng),
                                  self.cfg.gan_label_smoothing)

    def generator_loss(self, t: int) -> torch.Tensor:
        # Gradients reach the discriminator's parameters too; its optimiser zeroes them
        # before its own next step, and this part's optimiser holds only the generator.
        fake = self._noisy(self._fake(), t)
        return generator_loss(self.model.discriminator(fake, self.dropout_rng))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict(),
                "prior_rng": self.prior_rng.get_state(),
                "dropout_rng": self.dropout_rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
        self.prior_rng.set_state(state["prior_rng"])
        self.dropout_rng.set_state(state["dropout_rng"])
