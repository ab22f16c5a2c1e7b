"""Conditional GMMN (Ren, Li, Luo & Zhu, "Conditional Generative Moment-Matching Networks",
NeurIPS 2016): a generator fed noise and a one-hot class, trained by the conditional MMD
(:func:`gmmn.mmd.cmmd_loss`), in data space (``cgmmn``) or in an autoencoder's code space
(``cgmmn-ae``, the GMMN+AE's stages with the conditional GMMN last).

The stages train on joint rows: each training row with its class as K one-hot columns after
it (:meth:`ConditionalFamily.rows`), so batches, resumes and data order are the GMMN's. A step
draws ``data_batch_size`` rows (x_j, y_j) and generates ``sample_batch_size`` samples whose
classes are the batch's, cycled; CMMD^2 with the delta kernel on classes then compares the
class-wise mean embeddings (docs/conditional.md). The number of classes ``classes`` comes from
the training labels unless given, and the model keeps the training classes' frequencies, so
an unconditional ``sample(n)`` draws classes as often as the data has them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from gmmn.config import POSITIVE, POSITIVE_INT, TrainConfig, setting
from gmmn.data.splits import Splits, to_data_units
from gmmn.errors import ConfigError, DataError
from gmmn.families.base import PriorSampler, check_sample_memory
from gmmn.families.gmmn import WEIGHTS_FIX, GMMNSettings, GMMNStage, PriorFamily
from gmmn.families.gmmn_ae import FinetuneStage, GMMNAEFamily, GMMNAESettings, PretrainStage
from gmmn.mmd import cmmd_loss
from gmmn.models import Autoencoder, Generator, check_weights_fit, draw_prior, layer_weights
from gmmn.qmc import prior_points, prior_sampling
from gmmn.sampling import sample_generator
from gmmn.training.blocks import encode_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConditionSettings:
    """What the conditional families add to the GMMN's settings."""

    # None: one more than the largest training label
    classes: int | None = setting(None, "number of classes the generator is conditioned on "
                                        "('none': from the training labels)", POSITIVE_INT)
    # the ridge of (K + lambda I)^-1 in the CMMD; against class counts of ~50-100 per batch
    # it shrinks each class's mean embedding by 1-2 %
    cmmd_lambda: float = setting(1.0, "CMMD ridge lambda of (K + lambda I)^-1", POSITIVE)


@dataclass(frozen=True)
class CGMMNSettings(GMMNSettings, ConditionSettings):
    """The data-space conditional GMMN."""


@dataclass(frozen=True)
class CGMMNAESettings(GMMNAESettings, ConditionSettings):
    """The code-space conditional GMMN and its autoencoder."""


class ConditionalModel(nn.Module):
    """Noise z (prior_dim) and a condition row c (classes) -> generator -> (decoder).

    ``class_frequencies`` (a buffer, saved with the weights): how often each class occurs in
    the training rows; :meth:`sample` draws classes by it."""

    def __init__(self, generator: Generator, prior_dim: int, classes: int, *,
                 autoencoder: Autoencoder | None = None) -> None:
        super().__init__()
        self.generator, self.autoencoder = generator, autoencoder
        self.prior_dim, self.classes = prior_dim, classes
        self.register_buffer("class_frequencies", torch.full((classes,), 1.0 / classes))

    @property
    def device(self) -> torch.device:
        return self.class_frequencies.device

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(labels.long(), self.classes).to(self.device, torch.float32)

    def prior(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n prior points (n, prior_dim), drawn on the CPU as the GMMN's generator draws
        (its input is wider: the prior and the condition)."""
        return draw_prior(n, self.prior_dim, self.generator.prior, generator).to(self.device)

    def generate(self, z: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """What the generator writes (data, or codes) for prior points and condition rows."""
        return self.generator(torch.cat([z, conditions.to(z)], 1))

    def decode(self, z: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        out = self.generate(z, conditions)
        return out if self.autoencoder is None else self.autoencoder.decode(out)

    def sample_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
        return self.decode(self.prior(len(labels), generator), self.one_hot(labels))

    def draw_labels(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n classes drawn with the training frequencies (on the CPU, from ``generator``)."""
        return torch.multinomial(self.class_frequencies.cpu(), n, replacement=True,
                                 generator=generator)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample_labels(self.draw_labels(n, generator), generator)

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Prior points (k, prior_dim) -> samples of class 0 (what the interpolation figure
        walks across: one class, so a line shows the noise's effect alone)."""
        return self.decode(z.to(self.device), self.one_hot(torch.zeros(len(z), dtype=torch.long)))


def class_major(n: int, classes: int) -> torch.Tensor:
    """n labels in class order, ceil(n / classes) of each (the last class may get fewer):
    a grid of ceil(n / classes) columns shows one class per row."""
    per = -(-n // classes)
    return torch.arange(n) // per


class ConditionalStage(GMMNStage):
    """The GMMN stage with the CMMD: ``targets`` are joint rows (outputs, one-hot class)."""

    data_parallel = False

    def __init__(self, model: ConditionalModel, targets: torch.Tensor, cfg: TrainConfig,
                 **kwargs) -> None:
        super().__init__(model, targets[:, :-model.classes], cfg, **kwargs)
        self.sampler.data = targets  # the batches carry their classes (same order, same rows)

    def loss(self, t: int) -> torch.Tensor:
        m, model = self.settings, self.model
        batch = self.sampler.next()
        y, cy = batch[:, :-model.classes], batch[:, -model.classes:]
        cx = cy[torch.arange(m.sample_batch_size, device=cy.device) % len(cy)]
        x = model.generate(model.prior(m.sample_batch_size, self.rng), cx)
        if not bool(torch.isfinite(x).all()):
            return x.new_tensor(float("nan"))  # a diverged generator: the loop says so
        return cmmd_loss(x, y, cx, cy, sigmas=list(m.sigmas), lam=m.cmmd_lambda,
                         weights=None if m.sigma_weights is None else list(m.sigma_weights))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.model.sample_labels(class_major(n, self.model.classes), generator)


class ConditionalSampler(PriorSampler):
    """Samples of a conditional run: ``sample(n, label=3)`` (one class, or one label per
    sample), ``sample_conditions(rows)``; without a label, classes as often as in training."""

    @property
    def classes(self) -> int:
        return self.model.classes

    @property
    def prior(self) -> str:
        return self.model.generator.prior

    def labels(self, label, n: int) -> torch.Tensor:
        """``label`` (a class, or n classes) as n labels; one DataError for anything else."""
        values = torch.as_tensor(label)
        if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
            raise DataError(f"labels are class numbers 0 to {self.classes - 1}, got {label!r}")
        values = values.reshape(-1).long()
        if values.numel() == 1:
            values = values.expand(n)
        if values.numel() != n:
            raise DataError(f"give one label or one per sample: {values.numel()} labels for "
                            f"{n} samples")
        bad = values[(values < 0) | (values >= self.classes)]
        if len(bad):
            raise DataError(f"label {int(bad[0])} is not a class of this run, which has "
                            f"classes 0 to {self.classes - 1}; pick one of those")
        return values

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False,
               label=None) -> torch.Tensor:
        """``n`` samples (n, D) in data units: of class ``label`` (an int, or n of them), or
        with classes drawn at the training frequencies; ``qmc`` as for :class:`PriorSampler`."""
        gen = sample_generator(n, seed)
        labels = self.model.draw_labels(n, gen) if label is None else self.labels(label, n)
        return self._decode(self.model.one_hot(labels), n, seed, gen, qmc)

    @torch.no_grad()
    def sample_conditions(self, conditions: torch.Tensor, *, seed: int | None = None,
                          qmc: bool = False) -> torch.Tensor:
        """One sample per condition row (k, classes): one-hot rows, or any mixture of them."""
        c = torch.as_tensor(conditions)
        if c.ndim != 2 or c.shape[1] != self.classes or not c.is_floating_point():
            raise DataError(f"conditions must be float rows of shape (k, {self.classes}) (one-hot "
                            f"classes), got {tuple(c.shape)} {c.dtype}")
        return self._decode(c.to(self.device, torch.float32), len(c), seed,
                            sample_generator(len(c), seed), qmc)

    def _decode(self, conditions, n, seed, gen, qmc) -> torch.Tensor:
        check_sample_memory(self.model, n, self.dim, self.device)
        if prior_sampling(qmc) == "sobol":
            z = prior_points(n, self.prior_dim, prior=self.prior, seed=seed).to(self.device)
        else:
            z = self.model.prior(n, gen)
        out = self.model.decode(z, conditions)
        return to_data_units(out, self.info)


class ConditionalFamily(PriorFamily):
    """What the data-space and code-space conditional families share."""

    def fit_data(self, cfg: TrainConfig, splits: Splits) -> TrainConfig:
        labels = _labels(splits, "train", cfg)
        found = int(labels.max()) + 1
        if cfg.model.classes is None:
            return cfg.override(classes=found)
        if found > cfg.model.classes:
            raise ConfigError(f"{cfg.dataset} has labels up to {found - 1} but --classes is "
                              f"{cfg.model.classes}; pass --classes {found} or 'none'")
        return cfg

    def rows(self, cfg: TrainConfig, splits: Splits, split: str) -> torch.Tensor:
        """The split's rows with their classes as one-hot columns after them (splits
        without labels, which training does not use, as they are)."""
        x, y = getattr(splits, split), getattr(splits, f"{split}_labels")
        if y is None and split != "train":
            return x
        y = _labels(splits, split, cfg)
        return torch.cat([x, nn.functional.one_hot(y, cfg.model.classes).to(x.dtype)], 1)

    def init_from_data(self, cfg: TrainConfig, model: ConditionalModel,
                       train: torch.Tensor) -> None:
        counts = train[:, -model.classes:].sum(0).double()
        model.class_frequencies.copy_((counts / counts.sum()).to(model.class_frequencies))

    def fit_check(self, cfg, model, train, losses):
        return super().fit_check(cfg, model, train[:, :-model.classes], losses)

    def check_data(self, cfg, info, n_rows, device) -> None:
        super().check_data(cfg, info, n_rows, device)
        if getattr(cfg.model, "select_every", 0):  # its validation score is unconditional
            raise ConfigError(f"--select-every scores unconditional samples, but "
                              f"{self.label} generates by class; drop it (0)")

    def check_world(self, cfg: TrainConfig, world_size: int) -> None:
        raise ConfigError(f"{self.label} trains in one process (its CMMD stage is not "
                          f"data-parallel); run it with `gmmn train`, not under torchrun "
                          f"({world_size} workers)")

    def generator(self, cfg: TrainConfig, out_dim: int, *, sigmoid: bool,
                  rng: torch.Generator) -> Generator:
        m = cfg.model
        return Generator(m.prior_dim + m.classes, m.hidden, out_dim, sigmoid_output=sigmoid,
                         init_std=m.init_std, generator=rng, prior=m.prior,
                         init_range=m.init_range)

    def sampler(self, model, cfg, info, *, sampling=None, rows=None) -> ConditionalSampler:
        return ConditionalSampler(model, info, what=f"this run ({cfg.preset})")


def _labels(splits: Splits, split: str, cfg: TrainConfig) -> torch.Tensor:
    y = getattr(splits, f"{split}_labels")
    if y is None:
        raise DataError(f"{cfg.dataset} has no labels for its {split} split, and a "
                        f"conditional GMMN learns to generate a chosen class; give labelled "
                        f"data (an .npz with a labels or y array, docs/data.md)")
    return y


class CGMMNFamily(ConditionalFamily):
    name = "cgmmn"
    settings = CGMMNSettings
    data_space = True
    label = "the conditional GMMN"
    quick_fields = ("iterations", "late_from")

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return ["cgmmn"]

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> ConditionalModel:
        m = cfg.model
        _need_classes(cfg)
        check_weights_fit(layer_weights((m.prior_dim + m.classes, *m.hidden, data_dim)),
                          preset=cfg.preset, fix=WEIGHTS_FIX)
        rng = torch.Generator().manual_seed(cfg.seed)
        gen = self.generator(cfg, data_dim, sigmoid=self.sigmoid(cfg, unit_interval), rng=rng)
        return ConditionalModel(gen, m.prior_dim, m.classes)

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        return ConditionalStage(model, train, cfg, name=name, hooks=hooks)


class CGMMNAEFamily(ConditionalFamily, GMMNAEFamily):
    name = "cgmmn-ae"
    settings = CGMMNAESettings
    data_parallel = False
    label = "the conditional GMMN+AE"

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        return [*GMMNAEFamily.stage_names(self, cfg)[:-1], "cgmmn"]

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> ConditionalModel:
        _need_classes(cfg)
        plain = GMMNAEFamily.build_model(self, replace(cfg, model=_unconditional(cfg.model)),
                                         data_dim, unit_interval=unit_interval)
        rng = torch.Generator().manual_seed(cfg.seed + 1)  # the autoencoder keeps its weights
        gen = self.generator(cfg, cfg.model.ae_hidden[-1], sigmoid=self.sigmoid(cfg, True),
                             rng=rng)
        return ConditionalModel(gen, cfg.model.prior_dim, cfg.model.classes,
                                autoencoder=plain.autoencoder)

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        ae, k = model.autoencoder, model.classes
        x, onehot = train[:, :-k], train[:, -k:]
        if name.startswith("pretrain-"):
            return PretrainStage(ae, int(name.split("-")[1]) - 1, x, cfg)
        if name == "finetune":
            return FinetuneStage(ae, x, cfg)
        codes = torch.cat([encode_rows(ae.encode, x), onehot], 1)
        return ConditionalStage(model, codes, cfg, name=name, hooks=hooks)


def _need_classes(cfg: TrainConfig) -> None:
    if cfg.model.classes is None:
        raise ConfigError("the number of classes is chosen from the training labels before "
                          "the model is built; pass --classes K to build it without data")


def _unconditional(m: CGMMNAESettings) -> GMMNAESettings:
    """The GMMN+AE settings inside ``m`` (the autoencoder is the GMMN+AE's own)."""
    values = m.values()
    return GMMNAESettings(**{k: values[k] for k in GMMNAESettings.names()})


FAMILY = CGMMNFamily()
AE_FAMILY = CGMMNAEFamily()
