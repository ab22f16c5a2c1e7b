"""Model families: one module each, and one line per family in :data:`FAMILIES`.

A family (:class:`gmmn.families.base.Family`) owns its settings dataclass, how its model is
built from the data's shape, its stages, how it samples (a prior or a Markov chain), whether
it trains data-parallel and which iteration fields ``gmmn reproduce --quick`` scales. The rest
of the package looks the family up here by ``cfg.family`` and asks it.

This module also reads stored configs: :func:`config_from_dict` rebuilds a
:class:`gmmn.config.TrainConfig` from ``config.json`` or a checkpoint, upgrading the flat
layout of runs made before the families (one warning per file).
"""

from __future__ import annotations

import logging
import typing

from gmmn.config import Settings, TrainConfig, coerce, flag
from gmmn.errors import ConfigError
from gmmn.families import cgmmn, dbn, gan, gmmn, gmmn_ae, gsn, scae
from gmmn.families.base import Family
from gmmn.sampling import SamplingConfig

log = logging.getLogger(__name__)

FAMILIES: dict[str, Family] = {
    "gmmn": gmmn.FAMILY,
    "gmmn-ae": gmmn_ae.FAMILY,
    "gan": gan.FAMILY,
    "dbn": dbn.FAMILY,
    "scae": scae.FAMILY,
    "gsn": gsn.FAMILY,
    "cgmmn": cgmmn.FAMILY, "cgmmn-ae": cgmmn.AE_FAMILY,
}
_UPGRADED: set[str | None] = set()


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}; choose one of "
                          f"{', '.join(FAMILIES)}") from None


def family_of(cfg: TrainConfig) -> Family:
    return get_family(cfg.family)


def setting_classes() -> dict[str, type[Settings]]:
    """Every settings dataclass by its flags' owner: the run, the sampling, each family."""
    return {"run": TrainConfig, "sampling": SamplingConfig,
            **{name: f.settings for name, f in FAMILIES.items()}}


def make_config(family: str, **flat) -> TrainConfig:
    """A config of ``family`` from flat settings (flag names); the family's settings that
    are not given take their defaults, and a name it does not have is a ConfigError."""
    fam = get_family(family)
    run_names, sampling_names = set(TrainConfig.run_names()), set(SamplingConfig.names())
    model_names = set(fam.settings.names())
    unknown = sorted(set(flat) - run_names - sampling_names - model_names)
    if unknown:
        owners = sorted({name for name, f in FAMILIES.items()
                         if set(unknown) <= set(f.settings.names())})
        hint = f"--family {owners[0]}" if owners else "a family that has it"
        raise ConfigError(f"{', '.join(flag(n) for n in unknown)} is not a setting of the "
                          f"{family} family; drop it or choose {hint}")
    return TrainConfig(family=family,
                       model=fam.settings(**{k: v for k, v in flat.items() if k in model_names}),
                       sampling=SamplingConfig(**{k: v for k, v in flat.items()
                                                  if k in sampling_names}),
                       **{k: v for k, v in flat.items() if k in run_names})


def switch_family(cfg: TrainConfig, family: str, **changes) -> TrainConfig:
    """``cfg`` as a run of ``family`` with ``changes`` (flat setting names) applied: the
    settings the two families share keep their values, the new family's others take its
    defaults. The config is checked once, with the changes in it (a change can be what makes
    the new family's settings valid, e.g. explicit --sigmas for a GMMN+AE)."""
    if family == cfg.family and not changes:
        return cfg
    settings = get_family(family).settings
    names, hints = set(settings.names()), settings.hints()
    flat = {k: v for k, v in cfg.flat().items() if k != "family"}
    keep = {k: v for k, v in flat.items()
            if k in TrainConfig.run_names() or k in SamplingConfig.names()
            or (k in names and (v is not None or _optional(hints[k])))}
    # (a shared setting left to be chosen from the data, None, takes the new family's
    # default where that family has no such choice)
    return make_config(family, **{**keep, **changes})


def _optional(hint) -> bool:
    return type(None) in typing.get_args(hint)


# The flat layout (one dataclass for every family) chose the family by three fields.
_OLD_SELECTORS = ("autoencoder", "gan", "baseline")


def old_family(data: dict) -> str:
    """The family of a flat config dict of the layout before families."""
    if data.get("baseline") is not None:
        return str(data["baseline"])
    if data.get("gan"):
        return "gan"
    return "gmmn-ae" if data.get("autoencoder") else "gmmn"


def config_from_dict(data: dict, *, source: str | None = None,
                     _upgraded: bool = False) -> TrainConfig:
    """Rebuild a config from :meth:`TrainConfig.to_dict` output (``config.json``, a
    checkpoint's ``config``). A flat dict of the layout before families is upgraded, with one
    warning per ``source`` (which covers the settings added since: they take today's
    defaults); fields the family does not use are dropped."""
    if "family" not in data:
        return _upgrade(data, source=source)
    data = dict(data)
    fam = get_family(str(data.pop("family")))
    model = fam.settings.from_dict(_dict(data.pop("model", {}), "model", source),
                                   source=source, warn=not _upgraded)
    sampling = SamplingConfig.from_dict(_dict(data.pop("sampling", {}), "sampling", source),
                                        source=source, warn=not _upgraded)
    unknown = sorted(set(data) - set(TrainConfig.run_names()))
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; was the run made by a newer gmmn?")
    hints = TrainConfig.hints()
    return TrainConfig(family=fam.name, model=model, sampling=sampling,
                       **{k: coerce(v, hints[k]) for k, v in data.items()})


def _dict(value, what: str, source: str | None) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{source or 'the stored config'}: its {what} section is not a JSON "
                          f"object")
    return value


def _upgrade(data: dict, *, source: str | None) -> TrainConfig:
    family = old_family(data)
    fam = get_family(family)
    if source not in _UPGRADED:
        _UPGRADED.add(source)
        log.warning("%s holds a config of the layout before model families (gmmn 0.1 before "
                    "the reorganisation); read as family %s (its config.json keeps the old "
                    "layout; the checkpoints a resumed run writes have the new one)",
                    source or "the stored config", family)
    known = (set(TrainConfig.run_names()) | set(SamplingConfig.names())
             | {n for f in FAMILIES.values() for n in f.settings.names()} | set(_OLD_SELECTORS))
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; was the run made by a newer gmmn?")
    model_names = set(fam.settings.names())
    flat = {k: v for k, v in data.items()
            if k in model_names or k in TrainConfig.run_names() or k in SamplingConfig.names()}
    nested = {k: v for k, v in flat.items() if k in TrainConfig.run_names()}
    nested["family"] = family
    nested["model"] = {k: v for k, v in flat.items() if k in model_names}
    nested["sampling"] = {k: v for k, v in flat.items() if k in SamplingConfig.names()}
    return config_from_dict(nested, source=source, _upgraded=True)


def build_model(cfg: TrainConfig, data_dim: int, *, unit_interval: bool):
    """The networks of a run of ``cfg`` for data of dimension ``data_dim`` (its family's)."""
    return family_of(cfg).build_model(cfg, data_dim, unit_interval=unit_interval)
