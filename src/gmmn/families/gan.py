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

The GAN trains in one process: its family is not data-parallel, so torchrun is refused. Both
losses are per-example means, so a data-parallel version would need only the gradient
all-reduce of :class:`gmmn.training.loop.Hooks`, but each worker would have to draw
its discriminator's dropout masks for its own shard, and matching a single process exactly
(as the GMMN's data-parallel stage does, tested) would take masks drawn for the global batch;
that is not built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gmmn.config import (
    COUNT,
    MOMENTUM,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    RATE,
    TrainConfig,
    setting,
)
from gmmn.config import flag as config_flag
from gmmn.errors import ConfigError
from gmmn.families.base import GeneratorSettings
from gmmn.families.gmmn import WEIGHTS_FIX, PriorFamily
from gmmn.models import (
    Discriminator,
    GenerativeModel,
    Generator,
    check_weights_fit,
    layer_weights,
)
from gmmn.parzen import GAN_SIGMAS, parzen_log_densities
from gmmn.training.blocks import BatchSampler, GeneratorSamples, KeepsBest, seeded_rng
from gmmn.training.loop import Part, Stage
from gmmn.training.optim import OPTIMIZERS, gan_schedule

log = logging.getLogger(__name__)

GAN_OPTIMIZERS = ("sgd", "adam")
GAN_UPDATES = ("alternating", "simultaneous")
OUTPUT_BIASES = ("zero", "marginals")


@dataclass(frozen=True)
class GANSettings(GeneratorSettings):
    """The GMMN's generator trained against a maxout discriminator (Goodfellow et al. 2014)."""

    # sgd: released-form SGD; adam: Adam (gmmn.training.optim)
    gan_optimizer: str = setting("sgd", "GAN: sgd (released-form SGD with momentum) or adam "
                                        "(momentum = beta1)")
    disc_hidden: tuple[int, ...] = setting((240, 240), "GAN discriminator hidden layer sizes "
                                                       "(maxout units), comma-separated",
                                           POSITIVE_INT)
    disc_pieces: int = setting(5, "GAN discriminator: linear pieces per maxout unit",
                               POSITIVE_INT)
    disc_dropout: tuple[float, ...] = setting((0.2, 0.5, 0.5), "GAN discriminator: dropout "
                                                               "rate on each layer's input, "
                                                               "comma-separated", RATE)
    gan_final_momentum: float = setting(0.7, "GAN: momentum rises linearly from --momentum "
                                             "to this", MOMENTUM)
    gan_momentum_ramp: int = setting(137500, "GAN: iterations over which the momentum rises",
                                     POSITIVE_INT)
    gan_lr_decay: float = setting(1.000004, "GAN: lr divided by this every iteration",
                                  (1, 3.4028234663852886e38, True, True))
    gan_min_lr: float = setting(1e-6, "GAN: the decayed lr never falls below this",
                                NONNEGATIVE)
    # one-sided: real images' target is 1 - this
    gan_label_smoothing: float = setting(0.0, "GAN: one-sided label smoothing, the "
                                              "discriminator's target for real images is 1 "
                                              "minus this (0: the GAN paper's loss)",
                                         (0, 0.5, True, False))
    # Added to data in its own units ([0, 1] pixels for the presets): a std far past that
    # leaves the discriminator nothing but noise, and 1e300 turned every weight into NaN.
    gan_instance_noise: float = setting(0.0, "GAN: std of Gaussian noise added to the "
                                             "discriminator's real and generated inputs, "
                                             "falling linearly to 0 over the run (0: none)",
                                        (0, 1000, True, True))

    # zero: biases 0; marginals: the GAN paper's logit of the training pixels' means
    output_bias: str = setting("zero", "GAN: the generator's output biases at the start: zero, "
                                       "or marginals (sigmoid(b) = the training data's mean "
                                       "per feature, as the GAN paper's generator started)")
    # alternating: a discriminator step, then a generator step on fresh noise (Algorithm 1);
    # simultaneous: both from one batch and one forward pass, as the GAN paper's code stepped
    gan_update: str = setting("alternating", "GAN: alternating (a discriminator step, then a "
                                             "generator step on fresh noise) or simultaneous "
                                             "(both from one forward pass, the GAN paper's "
                                             "code)")
    # the GAN paper's code: 0.5 (BCE(1, D(x)) + BCE(0, D(G(z))))
    disc_loss_scale: float = setting(1.0, "GAN: the discriminator's loss times this (the GAN "
                                          "paper's code: 0.5)", POSITIVE)
    # 0: keep the last generator
    select_every: int = setting(0, "GAN: every N iterations score the validation rows' Parzen "
                                   "log-likelihood and keep the best generator (0: keep the "
                                   "last)", COUNT)
    select_samples: int = setting(10000, "GAN: samples behind each validation Parzen score",
                                  POSITIVE_INT)

    def check(self) -> None:
        super().check()
        if self.output_bias not in OUTPUT_BIASES:
            raise ConfigError(f"unknown --output-bias {self.output_bias!r}; choose one of "
                              f"{OUTPUT_BIASES}")
        if self.gan_update not in GAN_UPDATES:
            raise ConfigError(f"unknown --gan-update {self.gan_update!r}; choose one of "
                              f"{GAN_UPDATES}")
        if self.gan_optimizer not in GAN_OPTIMIZERS:
            raise ConfigError(f"unknown --gan-optimizer {self.gan_optimizer!r}; choose one of "
                              f"{GAN_OPTIMIZERS}")
        if not self.disc_hidden:
            raise ConfigError(f"{config_flag('disc_hidden')} needs at least one value")
        if len(self.disc_dropout) != len(self.disc_hidden) + 1:
            raise ConfigError(f"--disc-dropout needs one rate per discriminator layer input "
                              f"({len(self.disc_hidden) + 1}), got {len(self.disc_dropout)}")


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


class GanStage(KeepsBest, GeneratorSamples, Stage):
    """Discriminator step, then generator step, every iteration (two parts, one loop)."""

    BEST_KEY = "best_val_parzen"

    def __init__(self, model: GenerativeModel, data: torch.Tensor, cfg: TrainConfig, *,
                 name: str = "gan", validation: torch.Tensor | None = None) -> None:
        if model.discriminator is None:
            raise ValueError("a GAN stage needs a model with a discriminator")
        m = cfg.model
        self.name, self.iterations = name, m.iterations
        self.model, self.settings = model, m
        self.prior_rng = seeded_rng(cfg.seed, name, "prior")
        self.dropout_rng = seeded_rng(cfg.seed, name, "dropout")
        self.sampler = BatchSampler(data, m.data_batch_size, seeded_rng(cfg.seed, name, "data"))
        schedule = gan_schedule(lr=m.lr, momentum=m.momentum,
                                final_momentum=m.gan_final_momentum,
                                momentum_ramp=m.gan_momentum_ramp,
                                lr_decay=m.gan_lr_decay, min_lr=m.gan_min_lr)
        make_opt = OPTIMIZERS[m.gan_optimizer]
        d_opt = make_opt(model.discriminator.parameters(), lr=m.lr, momentum=m.momentum)
        g_opt = make_opt(model.generator.parameters(), lr=m.lr, momentum=m.momentum)
        advice = "lower --lr or use --gan-optimizer adam"
        simultaneous = m.gan_update == "simultaneous"
        self._g_loss: torch.Tensor | None = None  # the simultaneous update's generator loss
        self.parts = (Part("discriminator", d_opt, schedule,
                           self.simultaneous_loss if simultaneous else self.discriminator_loss,
                           advice=advice),
                      Part("generator", g_opt, schedule,
                           self.cached_generator_loss if simultaneous else self.generator_loss,
                           advice=advice))
        self.init_best(m.select_every, validation)
        # A diverged GAN keeps stepping on NaN weights, so checking where the logger reads
        # the losses anyway finds it without a device sync on the other iterations; the loop
        # also checks the last iteration and the weights it leaves, so a run of fewer than
        # log_every iterations is checked too.
        self.check_every = cfg.log_every

    def _fake(self) -> torch.Tensor:
        gen = self.model.generator
        return gen(gen.sample_prior(self.settings.sample_batch_size, self.prior_rng))

    def _noisy(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Instance noise (Sønderby et al. 2017; Arjovsky & Bottou 2017): real and generated
        images blurred by the same Gaussian, std ``gan_instance_noise * (1 - (t-1)/T)``, so
        their distributions overlap and the discriminator cannot separate them outright
        early on. Drawn from the dropout stream, which stays untouched when it is 0."""
        std = self.settings.gan_instance_noise * (1 - (t - 1) / self.iterations)
        if std <= 0:
            return x
        noise = torch.randn(x.shape, generator=self.dropout_rng).to(x.device, x.dtype)
        return x + std * noise

    def discriminator_loss(self, t: int) -> torch.Tensor:
        disc = self.model.discriminator
        with torch.no_grad():  # the generator is fixed during this step
            fake = self._fake()
        real = self.sampler.next()
        loss = discriminator_loss(disc(self._noisy(real, t), self.dropout_rng),
                                  disc(self._noisy(fake, t), self.dropout_rng),
                                  self.settings.gan_label_smoothing)
        return self._scaled(loss)

    def _scaled(self, loss: torch.Tensor) -> torch.Tensor:
        scale = self.settings.disc_loss_scale
        return loss if scale == 1 else scale * loss

    def simultaneous_loss(self, t: int) -> torch.Tensor:
        """The GAN paper code's update (its ``AdversaryCost2``): one data batch, one noise
        batch and one dropout mask per input, from which the discriminator's loss and the
        generator's are both taken, each differentiated by its own network's parameters at
        their values before either steps. The generator's loss sees the discriminator through
        a copy of its weights, so the discriminator's step (this part's) leaves the
        generator's gradient (the next part's) as it was computed here."""
        disc = self.model.discriminator
        real = self._noisy(self.sampler.next(), t)
        fake = self._noisy(self._fake(), t)
        real_logits = disc(real, self.dropout_rng)
        before = self.dropout_rng.get_state()
        fake_logits = disc(fake.detach(), self.dropout_rng)
        self.dropout_rng.set_state(before)  # the same mask for the generator's view
        frozen = {k: v.detach().clone() for k, v in disc.named_parameters()}
        self._g_loss = generator_loss(torch.func.functional_call(
            disc, frozen, (fake,), {"generator": self.dropout_rng}))
        return self._scaled(discriminator_loss(real_logits, fake_logits,
                                               self.settings.gan_label_smoothing))

    def cached_generator_loss(self, t: int) -> torch.Tensor:
        loss, self._g_loss = self._g_loss, None
        return loss

    @torch.no_grad()
    def validation_score(self) -> tuple[float, dict[str, float]]:
        """Mean Parzen log-likelihood of the validation rows under ``select_samples``
        samples, at the best bandwidth of the GAN paper's grid for them, and that bandwidth
        (a fixed noise stream: every score sees the same prior points)."""
        gen = self.model.generator
        rng = seeded_rng(0, self.name, "select")
        samples = gen(gen.sample_prior(self.settings.select_samples, rng))
        curve = parzen_log_densities(samples, self.validation, sigmas=GAN_SIGMAS).mean(0)
        best = int(torch.argmax(curve))
        score = float(curve[best])
        return score, {"val_parzen": score, "val_sigma": GAN_SIGMAS[best]}

    def generator_loss(self, t: int) -> torch.Tensor:
        # Gradients reach the discriminator's parameters too; its optimiser zeroes them
        # before its own next step, and this part's optimiser holds only the generator.
        fake = self._noisy(self._fake(), t)
        return generator_loss(self.model.discriminator(fake, self.dropout_rng))

    def state_dict(self) -> dict:
        out = {**super().state_dict(), "sampler": self.sampler.state_dict(),
               "prior_rng": self.prior_rng.get_state(),
               "dropout_rng": self.dropout_rng.get_state()}
        return {**out, **self.best_state_dict()}  # absent when off: older ones stay readable

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
        self.prior_rng.set_state(state["prior_rng"])
        self.dropout_rng.set_state(state["dropout_rng"])
        self.load_best_state_dict(state)


class GANFamily(PriorFamily):
    name = "gan"
    settings = GANSettings
    data_space = True
    label = "the GAN baseline"
    quick_fields = ("iterations", "gan_momentum_ramp")
    suggest_no_preset = False  # the settings chosen from the data are a GMMN's

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return ["gan"]

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> GenerativeModel:
        m = cfg.model
        count = layer_weights((m.prior_dim, *m.hidden, data_dim))
        count += layer_weights((data_dim, *(h * m.disc_pieces for h in m.disc_hidden), 1))
        check_weights_fit(count, preset=cfg.preset, fix=WEIGHTS_FIX)
        rng = torch.Generator().manual_seed(cfg.seed)
        gen = Generator(m.prior_dim, m.hidden, data_dim,
                        sigmoid_output=self.sigmoid(cfg, unit_interval), init_std=m.init_std,
                        generator=rng, prior=m.prior, init_range=m.init_range)
        # drawn after the generator: a GAN and a GMMN of one seed start alike
        disc = Discriminator(data_dim, m.disc_hidden, pieces=m.disc_pieces,
                             dropout_rates=m.disc_dropout, generator=rng)
        return GenerativeModel(gen, None, disc)

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return GanStage(model, train, cfg, validation=validation)

    def init_from_data(self, cfg, model, train):
        if cfg.model.output_bias == "marginals":
            model.generator.init_output_bias(train.mean(0))

    def fit_check(self, cfg, model, train, losses):
        # A GAN's losses say nothing of its fit; only the MMD's are read for a rise.
        return super().fit_check(cfg, model, train, [])


FAMILY = GANFamily()
