"""GMMN+AE (Li, Swersky & Zemel 2015, Sec. 3.2): an autoencoder, then a GMMN on its codes.

Stages: ``pretrain-1`` ... ``pretrain-K`` (layer k trained as a one-layer autoencoder with
its input dropout, against its clean input; skipped when ``pretrain_iterations`` is 0),
``finetune`` (the whole autoencoder, keeping the parameters with the lowest training loss,
evaluated every ``ae_eval_every`` iterations without dropout; skipped when 0), then ``gmmn``
on the autoencoder's deterministic codes with the autoencoder frozen. Samples are decoded
codes; :class:`Reconstructions` scores the autoencoder itself.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

from gmmn.config import COUNT as COUNT_BOUNDS
from gmmn.config import MOMENTUM, POSITIVE, POSITIVE_INT, RATE, TrainConfig, setting
from gmmn.config import flag as config_flag
from gmmn.data.splits import standardize, unstandardize
from gmmn.errors import ConfigError, DataError
from gmmn.families.gmmn import (
    WEIGHTS_FIX,
    GMMNSettings,
    GMMNStage,
    PriorFamily,
    check_batches_split,
)
from gmmn.models import (
    Autoencoder,
    GenerativeModel,
    Generator,
    check_weights_fit,
    layer_weights,
    reconstruction_loss,
)
from gmmn.sampling import refuse_qmc, refuse_settings, sample_generator
from gmmn.training.blocks import ENCODE_CHUNK, BatchSampler, SampledStage, encode_rows, seeded_rng
from gmmn.training.loop import Part
from gmmn.training.optim import ReleasedSGD, constant, stepwise_momentum

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GMMNAESettings(GMMNSettings):
    """The code-space GMMN's settings and the autoencoder's."""

    ae_hidden: tuple[int, ...] = setting((1024, 32), "encoder layer sizes after the input, "
                                                     "comma-separated (last: code size)",
                                         POSITIVE_INT)
    ae_dropout: tuple[float, ...] = setting((0.2, 0.5), "dropout rate on each encoder "
                                                        "layer's input, comma-separated", RATE)
    released_dropout: bool = setting(True, "released-code dropout: masks not rescaled, "
                                           "weights / (1-p) on copy")
    ae_lr: float = setting(0.1, "autoencoder learning rate (pretraining and fine-tuning)",
                           POSITIVE)
    ae_batch_size: int = setting(100, "autoencoder batch size", POSITIVE_INT)
    # a negative clip norm reverses the gradient
    ae_clip: float = setting(10.0, "autoencoder gradient-norm clip", POSITIVE)
    pretrain_iterations: int = setting(3000, "layer-wise pretraining iterations per layer "
                                             "(0: skip)", COUNT_BOUNDS)
    pretrain_momentum: float = setting(0.5, "pretraining momentum", MOMENTUM)
    finetune_iterations: int = setting(3000, "fine-tuning iterations (0: skip)", COUNT_BOUNDS)
    finetune_momentum: tuple[float, ...] = setting((0.0, 0.5, 0.9),
                                                   "fine-tuning momenta, comma-separated",
                                                   MOMENTUM)
    finetune_momentum_from: tuple[int, ...] = setting((1, 50, 200),
                                                      "iteration (from 1) where each "
                                                      "fine-tuning momentum starts",
                                                      POSITIVE_INT)
    ae_eval_every: int = setting(100, "fine-tuning: training loss every N iterations, best "
                                      "kept", POSITIVE_INT)

    def check(self) -> None:
        if self.sigmas is None:
            raise ConfigError("--sigmas median is chosen from data rows, but a GMMN+AE's "
                              "kernel works on codes that do not exist before training; "
                              "give its --sigmas explicitly")
        super().check()
        if not self.ae_hidden:
            raise ConfigError(f"{config_flag('ae_hidden')} needs at least one value")
        if len(self.ae_dropout) != len(self.ae_hidden):
            raise ConfigError(f"--ae-dropout needs one rate per encoder layer "
                              f"({len(self.ae_hidden)}), got {len(self.ae_dropout)}")
        if len(self.finetune_momentum) != len(self.finetune_momentum_from):
            raise ConfigError("--finetune-momentum and --finetune-momentum-from need equal "
                              "lengths")
        if list(self.finetune_momentum_from) != sorted(self.finetune_momentum_from):
            raise ConfigError("--finetune-momentum-from must be increasing")


class PretrainStage(SampledStage):
    """Layer ``k`` of the autoencoder as a one-layer autoencoder on its clean inputs."""

    def __init__(self, ae: Autoencoder, k: int, data: torch.Tensor, cfg: TrainConfig) -> None:
        m = cfg.model
        self.name, self.iterations = f"pretrain-{k + 1}", m.pretrain_iterations
        self.ae, self.k = ae, k
        with torch.no_grad():  # inputs of layer k: deterministic codes of layers below it
            inputs = data
            for j in range(k):
                inputs = ae.encode_layer(j, inputs)
        self.rng = seeded_rng(cfg.seed, self.name, "dropout")
        self.sampler = BatchSampler(inputs, m.ae_batch_size,
                                    seeded_rng(cfg.seed, self.name, "data"))
        params = [*ae.encoders[k].parameters(), *ae.decoders[k].parameters()]
        opt = ReleasedSGD(params, lr=m.ae_lr, momentum=m.pretrain_momentum)
        self.parts = (Part("reconstruction", opt,
                           constant(lr=m.ae_lr, momentum=m.pretrain_momentum),
                           self.loss, clip=m.ae_clip, advice="lower --ae-lr"),)

    def loss(self, t: int) -> torch.Tensor:
        h = self.sampler.next()
        logits = self.ae.decode_layer_logits(self.k, self.ae.encode_layer(self.k, h, self.rng))
        return reconstruction_loss(logits, h, sigmoid=self.k > 0 or self.ae.sigmoid_output)

    def finish(self) -> None:
        # Pretraining ends after the last layer: the released code copied the layers into
        # the full autoencoder here, dividing encoder weights by (1 - p).
        if self.k == self.ae.depth - 1:
            for j in range(self.ae.depth):
                self.ae.released_rescale(j)


class FinetuneStage(SampledStage):
    """The whole autoencoder; keeps the parameters with the lowest training loss."""

    def __init__(self, ae: Autoencoder, data: torch.Tensor, cfg: TrainConfig) -> None:
        m = cfg.model
        self.name, self.iterations = "finetune", m.finetune_iterations
        self.ae, self.data, self.eval_every = ae, data, m.ae_eval_every
        self.rng = seeded_rng(cfg.seed, self.name, "dropout")
        self.sampler = BatchSampler(data, m.ae_batch_size,
                                    seeded_rng(cfg.seed, self.name, "data"))
        opt = ReleasedSGD(ae.parameters(), lr=m.ae_lr, momentum=m.finetune_momentum[0])
        schedule = stepwise_momentum(lr=m.ae_lr, momenta=m.finetune_momentum,
                                     starts=m.finetune_momentum_from)
        self.parts = (Part("reconstruction", opt, schedule, self.loss, clip=m.ae_clip,
                           advice="lower --ae-lr"),)
        self.best_loss = float("inf")
        self.best_state: dict | None = None

    def loss(self, t: int) -> torch.Tensor:
        x = self.sampler.next()
        return reconstruction_loss(self.ae.decode_logits(self.ae.encode(x, self.rng)), x,
                                   sigmoid=self.ae.sigmoid_output)

    @torch.no_grad()
    def training_loss(self, chunk: int = ENCODE_CHUNK) -> float:
        """Mean per-example loss over the whole training set, without dropout."""
        total = 0.0
        for i in range(0, len(self.data), chunk):
            x = self.data[i:i + chunk]
            loss = reconstruction_loss(self.ae.decode_logits(self.ae.encode(x)), x,
                                       sigmoid=self.ae.sigmoid_output)
            total += float(loss) * len(x)
        return total / len(self.data)

    def after_step(self, t: int) -> dict[str, float]:
        if t % self.eval_every:
            return {}
        loss = self.training_loss()
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_state = {k: v.detach().clone() for k, v in self.ae.state_dict().items()}
        return {"train_loss": loss, "best_train_loss": self.best_loss}

    def finish(self) -> None:
        if self.best_state is not None:
            log.info("keeping the autoencoder with training loss %.4f", self.best_loss)
            self.ae.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        best = None if self.best_state is None else {
            k: v.cpu() for k, v in self.best_state.items()}
        return {**super().state_dict(), "best_loss": self.best_loss, "best_state": best}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best_loss = float(state["best_loss"])
        best = state["best_state"]
        self.best_state = None if best is None else {
            k: v.to(self.data.device) for k, v in copy.copy(best).items()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.ae(self.data[:n])  # reconstructions, to watch the autoencoder learn


class GMMNAEFamily(PriorFamily):
    name = "gmmn-ae"
    settings = GMMNAESettings
    data_parallel = True  # its GMMN stage; the autoencoder stages run whole on every worker
    label = "the GMMN+AE"
    quick_fields = ("iterations", "late_from", "pretrain_iterations", "finetune_iterations",
                    "ae_eval_every", "finetune_momentum_from")

    def stage_names(self, cfg: TrainConfig) -> list[str]:
        m, names = cfg.model, []
        if m.pretrain_iterations:
            names += [f"pretrain-{k + 1}" for k in range(len(m.ae_hidden))]
        if m.finetune_iterations:
            names.append("finetune")
        return [*names, "gmmn"]

    def stage_iterations(self, cfg: TrainConfig, name: str) -> int:
        if name.startswith("pretrain-"):
            return cfg.model.pretrain_iterations
        return cfg.model.finetune_iterations if name == "finetune" else cfg.model.iterations

    def batch_fields(self, cfg: TrainConfig) -> tuple[str, ...]:
        return ("data_batch_size", "ae_batch_size")

    def check_world(self, cfg: TrainConfig, world_size: int) -> None:
        check_batches_split(cfg, world_size)  # the GMMN stage's; checked before pretraining

    def sigmoid(self, cfg: TrainConfig, unit_interval: bool) -> bool:
        # Codes are sigmoid units in [0, 1], so the code-space generator ends in a sigmoid.
        return cfg.model.output != "linear"

    def build_model(self, cfg: TrainConfig, data_dim: int, *, unit_interval: bool
                    ) -> GenerativeModel:
        m = cfg.model
        code = m.ae_hidden[-1]
        count = layer_weights((m.prior_dim, *m.hidden, code))
        count += 2 * layer_weights((data_dim, *m.ae_hidden))  # encoder and mirrored decoder
        check_weights_fit(count, preset=cfg.preset, fix=WEIGHTS_FIX)
        if data_dim <= code:
            raise ConfigError(
                f"the data has {data_dim} dimensions, but preset {cfg.preset!r} encodes into "
                f"{code}: an autoencoder needs a code smaller than its input; pass "
                f"--ae-hidden with a smaller last size or use a preset without -ae")
        rng = torch.Generator().manual_seed(cfg.seed)
        ae = Autoencoder((data_dim, *m.ae_hidden), m.ae_dropout,
                         released_dropout=m.released_dropout, sigmoid_output=unit_interval,
                         init_std=m.init_std, generator=rng)
        gen = Generator(m.prior_dim, m.hidden, code, sigmoid_output=self.sigmoid(cfg, True),
                        init_std=m.init_std, generator=rng,
                        prior=m.prior, init_range=m.init_range)
        return GenerativeModel(gen, ae)

    def build_stage(self, name, model, train, cfg, hooks, *, validation=None):
        ae = model.autoencoder
        if name.startswith("pretrain-"):
            return PretrainStage(ae, int(name.split("-")[1]) - 1, train, cfg)
        if name == "finetune":
            return FinetuneStage(ae, train, cfg)
        # --select-every compares sample codes with the validation rows' codes
        codes = (encode_rows(ae.encode, validation)
                 if cfg.model.select_every and validation is not None else None)
        return GMMNStage(model, encode_rows(ae.encode, train), cfg, hooks=hooks,
                         validation=codes)


class Reconstructions:
    """A GMMN+AE run's autoencoder as a sample source: ``sample(n, seed=s)`` returns the
    reconstructions (decode of encode, no dropout) of ``n`` random rows of ``images``.

    Scored like samples (``gmmn evaluate --reconstructions``), they show the ceiling of the
    GMMN+AE: what its samples would score if the code-space GMMN matched the distribution of
    codes exactly. A gap between the samples and this ceiling is the GMMN's; a gap between the
    ceiling and real data is the autoencoder's.
    """

    prior_dim = None  # rows of data, not points of a prior
    settings = None
    tunable_noise = False

    def __init__(self, model: GenerativeModel, info: dict, images: torch.Tensor, *,
                 preset: str) -> None:
        if getattr(model, "autoencoder", None) is None:
            raise DataError(f"run of preset {preset!r} has no autoencoder, so it has no "
                            "reconstructions; pass a GMMN+AE run")
        dim = int(info["dim"])
        if images.ndim != 2 or images.shape[1] != dim:
            raise DataError(f"images must have shape (N, {dim}), got {tuple(images.shape)}")
        self.model, self.info, self.images = model, info, images

    def with_settings(self, **changes) -> Reconstructions:
        refuse_settings(changes, "reconstructions have no chain")
        return self

    def decode_prior(self, z: torch.Tensor) -> torch.Tensor:
        raise DataError("reconstructions have no prior to decode")

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, qmc: bool = False) -> torch.Tensor:
        refuse_qmc(qmc, "reconstructions come from images, not from a prior")
        gen = sample_generator(n, seed)
        total = self.images.shape[0]
        rows = (torch.randperm(total, generator=gen)[:n] if n <= total
                else torch.randint(total, (n,), generator=gen))  # more than there are
        device = next(self.model.parameters()).device
        x = standardize(self.images[rows].to(device, torch.float32), self.info.get("mean"),
                        self.info.get("std"))
        ae = self.model.autoencoder
        return unstandardize(ae.decode(ae.encode(x)), self.info.get("mean"),
                             self.info.get("std"))


FAMILY = GMMNAEFamily()
