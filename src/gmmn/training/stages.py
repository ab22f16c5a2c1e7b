"""The pluggable parts of training: what each stage minimises and how it draws its batches.

* :class:`GMMNStage` — MMD between generated samples and data (or codes of data), Li et al.
  2015 Sec. 3: minimise sqrt(MMD^2) under a mixture of Gaussian kernels, ``gmmn.mmd.mmd_loss``.
* :class:`PretrainStage` — layer k of the autoencoder trained as a one-layer autoencoder with
  its input dropout, against its clean input.
* :class:`FinetuneStage` — the whole autoencoder, keeping the parameters with the lowest
  training loss (evaluated every ``ae_eval_every`` iterations without dropout).

:func:`stage_names` lists a config's stages in order and :func:`build_stage` builds each (the
GAN's stage lives in :mod:`gmmn.training.gan`, the baselines' in :mod:`gmmn.baselines.stages`).
Each stage owns its RNG generators (seeded from the run seed and the stage name) and its
data order, and exposes them through ``state_dict`` for checkpoints.
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections.abc import Callable

import torch

from gmmn.config import TrainConfig
from gmmn.mmd import median_heuristic, mmd_loss
from gmmn.models import Autoencoder, GenerativeModel, reconstruction_loss
from gmmn.training.loop import Hooks, Part, Stage
from gmmn.training.optim import ReleasedSGD, constant, gmmn_schedule, stepwise_momentum

log = logging.getLogger(__name__)


def make_generator(seed: int, *names: str) -> torch.Generator:
    """A CPU generator seeded from the run seed and a purpose ("gmmn", "prior"), so stages
    never share a stream and adding one stage does not shift another's randomness."""
    key = zlib.crc32("/".join(names).encode())
    return torch.Generator().manual_seed(seed * 1_000_003 + key)


def median_distance(x: torch.Tensor, *, seed: int = 0, n: int = 1000) -> float:
    """The median pairwise Euclidean distance of up to ``n`` random rows of ``x`` (float64):
    :func:`gmmn.mmd.median_heuristic` of the rows of ``x``, so where that median is 0 the mean
    distance, and 1 when all rows are equal (or there is only one)."""
    if len(x) < 2:
        return 1.0  # no pair of rows: as for rows that are all equal
    return median_heuristic(x[:1], x[1:], max_points=n, seed=seed)  # pools back to x


# Kernel scales this far from the median distance see (almost) every pair of points alike:
# exp(-d^2 / 2 sigma^2) is ~1 for all pairs (sigma >> d) or ~0 for all distinct pairs
# (sigma << d), and the MMD carries no gradient worth the name.
FAR_SCALE = 100.0

# Rows per forward pass when a whole training split goes through a network without gradients
# (codes for the GMMN stage, the greedy layers' inputs, the fine-tuning loss): 5000 rows of a
# 1024-unit layer are 20 MB of float32, so memory stays flat whatever the split's size.
ENCODE_CHUNK = 5000


def _warn_far_scales(targets: torch.Tensor, sigmas, *, seed: int, name: str) -> None:
    if len(targets) < 2:
        return
    m = median_distance(targets, seed=seed)
    if m > 0 and (all(s > FAR_SCALE * m for s in sigmas)
                  or all(s < m / FAR_SCALE for s in sigmas)):
        log.warning("every kernel scale (--sigmas %s) is over %gx away from the median "
                    "distance %.3g between the %s stage's targets: the loss will carry almost "
                    "no signal; choose scales near it (e.g. --sigmas %s)",
                    ",".join(f"{s:g}" for s in sigmas), FAR_SCALE, m, name,
                    ",".join(f"{m * r:.3g}" for r in (0.25, 0.5, 1.0, 2.0)))


class BatchSampler:
    """Minibatches in shuffled epochs, wrapping across epoch ends as the released code did."""

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.data = data
        # A batch larger than the data would hold each row many times over: the same
        # statistics at many times the cost. Capped at the data (the runner warns).
        self.batch_size = min(batch_size, len(data))
        self.generator = generator
        self.order = torch.randperm(len(data), generator=generator)
        self.pos = 0

    def next(self, shard: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> torch.Tensor:
        """The next batch; ``shard`` picks this worker's indices of it (data-parallel)."""
        parts, need = [], self.batch_size
        while need > 0:
            if self.pos >= len(self.order):
                self.order = torch.randperm(len(self.data), generator=self.generator)
                self.pos = 0
            take = self.order[self.pos:self.pos + need]
            self.pos += len(take)
            need -= len(take)
            parts.append(take)
        idx = parts[0] if len(parts) == 1 else torch.cat(parts)
        if shard is not None:
            idx = shard(idx)
        return self.data[idx.to(self.data.device)]

    def state_dict(self) -> dict:
        return {"order": self.order.clone(), "pos": self.pos,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order = state["order"].clone()
        self.pos = int(state["pos"])
        self.generator.set_state(state["generator"])


class SampledStage(Stage):
    """A stage with one optimiser, a batch sampler and one extra RNG stream."""

    sampler: BatchSampler
    rng: torch.Generator

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict(),
                "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
        self.rng.set_state(state["rng"])


class GeneratorSamples:
    """Progress pictures of a stage that trains ``self.model``'s generator: fresh samples
    (the GMMN and GAN stages)."""

    model: GenerativeModel

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.model.sample(n, generator=generator)


class GMMNStage(GeneratorSamples, SampledStage):
    """Train ``model.generator`` so its samples match ``targets`` (data, or codes of data)."""

    def __init__(self, model: GenerativeModel, targets: torch.Tensor, cfg: TrainConfig, *,
                 name: str = "gmmn", hooks: Hooks | None = None) -> None:
        self.name, self.iterations = name, cfg.iterations
        self.model, self.cfg = model, cfg
        hooks = hooks or Hooks()
        self.gather, self.shard = hooks.gather, hooks.shard
        self.rng = make_generator(cfg.seed, name, "prior")
        self.sampler = BatchSampler(targets, cfg.data_batch_size,
                                    make_generator(cfg.seed, name, "data"))
        opt = ReleasedSGD(model.generator.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        schedule = gmmn_schedule(lr=cfg.lr, momentum=cfg.momentum, late_from=cfg.late_from,
                                 late_lr_factor=cfg.late_lr_factor,
                                 late_momentum=cfg.late_momentum)
        self.parts = (Part("mmd", opt, schedule, self.loss),)
        _warn_far_scales(targets, cfg.sigmas, seed=cfg.seed, name=name)

    def loss(self, t: int) -> torch.Tensor:
        gen = self.model.generator
        # Data-parallel: every worker draws the global prior batch and data indices from the
        # same streams and keeps its own rows, so the gathered batches are one process's.
        z = self.shard(gen.sample_prior(self.cfg.sample_batch_size, self.rng))
        x = self.gather(gen(z))
        if not bool(torch.isfinite(x).all()):
            # The generator diverged (its weights overflowed): a NaN loss lets the loop say
            # so, where the MMD's input check would blame the samples like bad data.
            return x.new_tensor(float("nan"))
        y = self.gather(self.sampler.next(self.shard))
        return mmd_loss(x, y, sigmas=list(self.cfg.sigmas),
                        weights=None if self.cfg.sigma_weights is None
                        else list(self.cfg.sigma_weights))


class PretrainStage(SampledStage):
    """Layer ``k`` of the autoencoder as a one-layer autoencoder on its clean inputs."""

    def __init__(self, ae: Autoencoder, k: int, data: torch.Tensor, cfg: TrainConfig) -> None:
        self.name, self.iterations = f"pretrain-{k + 1}", cfg.pretrain_iterations
        self.ae, self.k = ae, k
        with torch.no_grad():  # inputs of layer k: deterministic codes of layers below it
            inputs = data
            for j in range(k):
                inputs = ae.encode_layer(j, inputs)
        self.rng = make_generator(cfg.seed, self.name, "dropout")
        self.sampler = BatchSampler(inputs, cfg.ae_batch_size,
                                    make_generator(cfg.seed, self.name, "data"))
        params = [*ae.encoders[k].parameters(), *ae.decoders[k].parameters()]
        opt = ReleasedSGD(params, lr=cfg.ae_lr, momentum=cfg.pretrain_momentum)
        self.parts = (Part("reconstruction", opt,
                           constant(lr=cfg.ae_lr, momentum=cfg.pretrain_momentum),
                           self.loss, clip=cfg.ae_clip, advice="lower --ae-lr"),)

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
        self.name, self.iterations = "finetune", cfg.finetune_iterations
        self.ae, self.data, self.cfg = ae, data, cfg
        self.rng = make_generator(cfg.seed, self.name, "dropout")
        self.sampler = BatchSampler(data, cfg.ae_batch_size,
                                    make_generator(cfg.seed, self.name, "data"))
        opt = ReleasedSGD(ae.parameters(), lr=cfg.ae_lr, momentum=cfg.finetune_momentum[0])
        schedule = stepwise_momentum(lr=cfg.ae_lr, momenta=cfg.finetune_momentum,
                                     starts=cfg.finetune_momentum_from)
        self.parts = (Part("reconstruction", opt, schedule, self.loss, clip=cfg.ae_clip,
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
        if t % self.cfg.ae_eval_every:
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


def stage_names(cfg: TrainConfig) -> list[str]:
    """The stages a run of ``cfg`` trains, in order (docs/training.md)."""
    if cfg.baseline is not None:
        from gmmn.baselines.stages import stage_names as baseline_stages

        return baseline_stages(cfg)
    if cfg.gan:
        return ["gan"]
    names = []
    if cfg.autoencoder:
        if cfg.pretrain_iterations:
            names += [f"pretrain-{k + 1}" for k in range(len(cfg.ae_hidden))]
        if cfg.finetune_iterations:
            names.append("finetune")
    return [*names, "gmmn"]


def build_stage(name: str, model: GenerativeModel, train: torch.Tensor, cfg: TrainConfig,
                hooks: Hooks | None = None) -> Stage:
    """Stage ``name`` of ``cfg``'s run on the training rows ``train``; ``hooks`` reach the
    GMMN stage, the only data-parallel one (gmmn.training.distributed)."""
    if cfg.baseline is not None:
        from gmmn.baselines.stages import build_stage as baseline_stage

        return baseline_stage(name, model, train, cfg)
    if name == "gan":
        from gmmn.training.gan import GanStage  # gan.py imports this module's BatchSampler

        return GanStage(model, train, cfg)
    ae = model.autoencoder
    if name.startswith("pretrain-"):
        return PretrainStage(ae, int(name.split("-")[1]) - 1, train, cfg)
    if name == "finetune":
        return FinetuneStage(ae, train, cfg)
    if ae is not None:
        with torch.no_grad():
            train = torch.cat([ae.encode(train[i:i + ENCODE_CHUNK])
                               for i in range(0, len(train), ENCODE_CHUNK)])
    return GMMNStage(model, train, cfg, hooks=hooks)
