"""Training configuration: frozen dataclasses whose field names are also the CLI flags
(``--data-batch-size`` for ``data_batch_size``) and the keys of ``config.json``.

A :class:`TrainConfig` holds what every run has (data, seed, device, logging) and two sections:
``model``, the settings of the run's model family (a :class:`Settings` subclass that the family
owns, :mod:`gmmn.families`), and ``sampling``, how a Markov-chain model draws its samples
(:class:`gmmn.sampling.SamplingConfig`). Flags stay flat: ``--lr`` sets ``cfg.model.lr``,
``--chains`` ``cfg.sampling.chains`` (:meth:`TrainConfig.override`).

A config is never mutated: presets build one, the CLI derives another with
:meth:`TrainConfig.override`, and each dataclass validates every copy in ``__post_init__``:
types from the annotations, ranges from each field's ``bounds``, and the cross-field rules of
its :meth:`Settings.check`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import types
import typing
from dataclasses import dataclass, fields
from typing import ClassVar

from gmmn.errors import ConfigError

log = logging.getLogger(__name__)
_WARNED: set[tuple[str | None, tuple[str, ...]]] = set()  # see Settings.from_dict

DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("paper", "gan")  # gmmn.data.mnist.SPLITS
TRANSFORMS = ("pobs",)  # gmmn.copulas.TRANSFORMS
# Fields whose None means "chosen from the training data" (gmmn.training.auto.resolve).
AUTO_FIELDS = ("standardize", "sigmas", "lr", "data_batch_size", "prior_dim")

# Bounds of numeric fields: (low, high, low included, high included); tuple fields apply
# them to each value, None (where allowed) skips them. NaN fails every comparison. A float
# field becomes a float32 tensor or an optimiser's float32 step, so none may exceed float32's
# largest number (1e39 or 1e300 overflowed at the first step); an integer one is a tensor
# size, count or int64 index, so none may exceed int64's.
F32 = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max, without importing it
I64 = 2**63 - 1
POSITIVE_INT = (1, I64, True, True)
COUNT = (0, I64, True, True)
POSITIVE = (0, F32, False, True)
NONNEGATIVE = (0, F32, True, True)
MOMENTUM = (0, 1, True, False)
RATE = (0, 1, True, False)  # a dropout rate or a probability below 1


def setting(default, help: str, bounds: tuple | None = None):
    """A config field with its one line of ``gmmn train --help`` and its numeric bounds."""
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds})


@dataclass(frozen=True)
class Settings:
    """A frozen group of config fields, checked on construction."""

    def __post_init__(self) -> None:
        _check_types(self)
        _check_bounds(self)
        self.check()

    def check(self) -> None:
        """Cross-field rules; a subclass raises :class:`ConfigError` naming the flags."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def help_of(cls, name: str) -> str | None:
        return cls.__dataclass_fields__[name].metadata.get("help")

    @classmethod
    def hints(cls) -> dict[str, typing.Any]:
        return typing.get_type_hints(cls)

    def values(self) -> dict:
        """Field name -> value (tuples stay tuples), one level deep."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str | None = None, warn: bool = True):
        """Rebuild from :meth:`to_dict` output; unknown keys are an error.

        Fields missing from ``data`` (a run made before they existed) take today's defaults,
        with one warning naming them and ``source`` (``warn=False``: the caller says so)."""
        known = set(cls.names())
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; was the run made by a newer gmmn?")
        missing = [n for n in cls.names() if n not in data]
        # Once per file and process: a resume reads the same checkpoint twice (CLI, runner).
        if warn and missing and (source, tuple(missing)) not in _WARNED:
            _WARNED.add((source, tuple(missing)))
            log.warning("%s has no %s (made by an older gmmn); using today's defaults for "
                        "them", source or "the stored config", ", ".join(missing))
        hints = cls.hints()
        return cls(**{k: coerce(v, hints[k]) for k, v in data.items()})


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Everything a run needs: the run's own fields, its family's ``model`` settings and the
    ``sampling`` settings (see :mod:`gmmn.presets` for the reason behind each value)."""

    family: str  # a key of gmmn.families.FAMILIES
    model: Settings  # that family's settings dataclass
    sampling: Settings  # gmmn.sampling.SamplingConfig
    preset: str = "custom"
    dataset: str = setting("digits", "dataset name (digits, mnist, fashion-mnist, tfd) or a "
                                     "path to your data")
    data_dir: str | None = setting(None, "where dataset files are looked for / cached")
    # None (auto): z-score when any value lies outside [0, 1], as tables usually do
    standardize: bool | None = setting(False,
                                       "z-score each feature (the generator output becomes "
                                       "linear); tabular-gmmn leaves it unset: only when values "
                                       "lie outside [0, 1]")
    # paper: the GMMN paper's random 5000; gan: the GAN paper's file order (50000 / 10000)
    split: str = setting("paper", "MNIST / Fashion-MNIST validation rows: paper (5000 random "
                                  "training images) or gan (the last 10000, training on the "
                                  "first 50000, as the GAN paper did)")
    # pobs: pseudo-observations, ranks / (n + 1) per column (gmmn.copulas.pobs), so the
    # model learns the data's copula and samples on the copula scale (0, 1)^D
    transform: str | None = setting(None, "data transform before training: pobs "
                                          "(pseudo-observations, rank / (n + 1) per column: "
                                          "learn the copula) or none")
    # categories and counts: each sample of such a column is put on its nearest value
    discrete_levels: int = setting(0, "sample each column whose training values take at most "
                                      "N distinct values on those values (categories, "
                                      "counts; 0: off; tabular-gmmn: 10)", COUNT)
    # torch and numpy seeds are 32/64-bit unsigned
    seed: int = setting(0, "seed of weights, prior noise, dropout and data order",
                        (0, 2**32 - 1, True, True))
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    checkpoint_every: int = setting(1000, "checkpoint every N iterations (0: only at stage "
                                          "ends)", COUNT)
    log_every: int = setting(100, "a metrics.jsonl line every N iterations", POSITIVE_INT)
    sample_every: int = setting(5000, "a sample grid every N iterations (image data; 0: only "
                                      "at the end)", COUNT)

    SECTIONS: ClassVar[tuple[str, ...]] = ("family", "model", "sampling")

    def check(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown --device {self.device!r}; choose auto, cpu or cuda")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown --split {self.split!r}; choose one of {SPLITS}")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise ConfigError(f"unknown --transform {self.transform!r}; choose one of "
                              f"{TRANSFORMS} or none")
        if self.transform is not None and self.standardize:
            raise ConfigError("--transform pobs puts the data on (0, 1) already; drop "
                              "--standardize (or pass --no-standardize)")

    @classmethod
    def run_names(cls) -> tuple[str, ...]:
        """The run's own fields (flags shared by every family)."""
        return tuple(n for n in cls.names() if n not in cls.SECTIONS)

    def flat(self) -> dict:
        """Every setting by its flag's name: the run's fields, then the model's and the
        sampling's (no two share a name)."""
        out = {n: getattr(self, n) for n in self.run_names()}
        return {"family": self.family, **out, **self.model.values(), **self.sampling.values()}

    def __getattr__(self, name: str):
        """A setting read by its flat name (``cfg.lr`` is ``cfg.model.lr``), as a flag names
        it; only called when ``name`` is not a field of the run itself."""
        if name.startswith("__"):
            raise AttributeError(name)
        for section in ("model", "sampling"):
            settings = self.__dict__.get(section)
            if settings is not None and name in settings.__dataclass_fields__:
                return getattr(settings, name)
        raise AttributeError(f"a config of family {self.__dict__.get('family')!r} has no "
                             f"setting {name!r}")

    def get(self, name: str, default=None):
        """Setting ``name`` wherever it lives, or ``default`` when this family has none."""
        return self.flat().get(name, default)

    def override(self, **changes) -> TrainConfig:
        """A copy with settings changed by their flat names (``lr=0.1`` changes
        ``model.lr``); a name this run's family does not have is a :class:`ConfigError`.
        Changing ``family`` needs the registry: :func:`gmmn.families.switch_family`."""
        run, model, sampling = {}, {}, {}
        model_names, sampling_names = set(self.model.names()), set(self.sampling.names())
        for name, value in changes.items():
            if name in self.SECTIONS:
                raise ConfigError(f"{name} is not changed by override; use "
                                  f"gmmn.families.switch_family for another family")
            if name in self.run_names():
                run[name] = value
            elif name in model_names:
                model[name] = value
            elif name in sampling_names:
                sampling[name] = value
            else:
                raise ConfigError(f"{flag(name)} is not a setting of the {self.family} family "
                                  f"(preset {self.preset}); drop it, or train a family that "
                                  f"has it (--family)")
        return dataclasses.replace(
            self, **run,
            **({"model": dataclasses.replace(self.model, **model)} if model else {}),
            **({"sampling": dataclasses.replace(self.sampling, **sampling)} if sampling else {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _describe(lo: float, hi: float, lo_in: bool, hi_in: bool) -> str:
    positive = (lo, lo_in) in ((0, False), (1, True))
    low = "positive" if positive else f"{'>=' if lo_in else '>'} {_num(lo)}"
    if hi == F32:
        return f"{low} and at most {hi:.6g} (float32's largest number)"
    if hi == I64:
        return f"{low} and at most 2**63 - 1" if positive else f"{low} and below 2**63"
    return f"{low} and {'<=' if hi_in else '<'} {_num(hi)}"


def _check_bounds(settings: Settings) -> None:
    for f in fields(settings):
        bounds = f.metadata.get("bounds")
        if bounds is None:
            continue
        lo, hi, lo_in, hi_in = bounds
        value = getattr(settings, f.name)
        values = value if isinstance(value, tuple) else () if value is None else (value,)
        for v in values:
            above = v >= lo if lo_in else v > lo
            below = v <= hi if hi_in else v < hi
            if not (above and below):
                shown = ",".join(_num(x) for x in values)
                raise ConfigError(f"{flag(f.name)} must be "
                                  f"{_describe(lo, hi, lo_in, hi_in)}, got {shown}")


def flag(name: str) -> str:
    """The command-line flag of config field ``name`` (``data_batch_size`` ->
    ``--data-batch-size``): the one place the field-to-flag mapping is written."""
    return "--" + name.replace("_", "-")


def coerce(value, hint):
    """JSON lists back into tuples where the field's type is a tuple (``tuple[...]``, maybe
    ``| None``); any other value is left for :func:`_check_types` to judge."""
    if isinstance(value, list) and _is_tuple_hint(hint):
        return tuple(value)
    return value


def _is_tuple_hint(hint) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    return any(_is_tuple_hint(arg) for arg in typing.get_args(hint)
               if typing.get_origin(hint) in (typing.Union, types.UnionType))


def _check_types(settings: Settings) -> None:
    for name, hint in type(settings).hints().items():
        if typing.get_origin(hint) is ClassVar or name not in settings.__dataclass_fields__:
            continue
        value = getattr(settings, name)
        if not _matches(value, hint):
            raise ConfigError(f"{flag(name)} has the wrong type: {value!r}")


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, tuple) and all(_matches(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def package_versions() -> dict[str, str]:
    """Versions saved beside the config of every run, for reproducing it."""
    import numpy
    import torch

    from gmmn._version import __version__

    # str(): torch's version is a str subclass that a weights-only load refuses.
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": str(numpy.__version__), "gmmn": str(__version__)}
