"""``gmmn train``: run a preset, with any config field overridden by its flag.

Flags are generated from the settings dataclasses (the run's, the sampling's and every model
family's, :mod:`gmmn.families`), so ``--data-batch-size`` is the field ``data_batch_size`` of
the family's settings and the key ``data_batch_size`` of config.json's ``model`` section. A
flag the chosen preset's family does not have is refused with its name. ``--family`` trains
another family from a preset's shared settings (``--autoencoder``, ``--gan`` and
``--baseline NAME`` are its older spellings).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import types
import typing

from gmmn.config import TrainConfig
from gmmn.config import flag as config_flag
from gmmn.errors import ConfigError
from gmmn.families import FAMILIES, setting_classes, switch_family
from gmmn.presets import TABULAR_PRESET
from gmmn.progress import TrainingProgress

# Flags this command defines itself (not generated from the config).
_OWN = ("preset", "family")
# The flat layout's --baseline names: the families that sample by their own Markov chain.
_BASELINES = tuple(name for name, f in FAMILIES.items() if f.samples_by_chain)


def field_types() -> dict[str, typing.Any]:
    """Every setting's name -> type hint, over the run's, the sampling's and every family's
    dataclass (a name two families share has one type)."""
    out: dict[str, typing.Any] = {}
    for cls in setting_classes().values():
        hints = cls.hints()
        for name in cls.names():
            if name not in TrainConfig.SECTIONS:
                out.setdefault(name, hints[name])
    return out


def field_help(name: str, family: str | None = None) -> str | None:
    """The help of setting ``name``: from ``family``'s dataclass where it has it."""
    classes = setting_classes()
    order = [classes[family]] if family in classes else []
    for cls in [*order, *classes.values()]:
        if name in cls.__dataclass_fields__:
            return cls.help_of(name)
    return None


def _is_optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(hint)


def _base(hint):
    if _is_optional(hint):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _parser_for(name: str, hint):
    """A string -> value converter for a config field of type ``hint``."""
    base = _base(hint)
    optional = _is_optional(hint)
    if name == "sigmas":
        return parse_sigmas
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]

        def parse_tuple(text: str):
            if optional and text.lower() == "none":
                return _NONE
            try:
                return tuple(item(v) for v in text.split(",") if v.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected comma-separated {item.__name__} values, got {text!r}") from None
        return parse_tuple

    def parse_scalar(text: str):
        if optional and text.lower() == "none":
            return _NONE
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {base.__name__}, got {text!r}") from None
    return parse_scalar


_NONE = object()  # "none" on the command line: set an optional field to None


def parse_sigmas(text: str) -> tuple[float, ...]:
    """A paper scale set by name (mnist, tfd, mnist-code, tfd-code) or standard deviations."""
    from gmmn.mmd import MMDError, paper_sigmas

    if text.strip().lower() == "median":  # chosen from the training data (gmmn.training.auto)
        return _NONE
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        pass
    try:
        return tuple(paper_sigmas(text))
    except MMDError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, comma-separated standard deviations, or "
                                         f"median (from the training data)") from None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config fields (default: the preset's value)")
    group.add_argument("--family", default=None, choices=list(FAMILIES),
                       help="train this model family from the preset's shared settings "
                            "(default: the preset's)")
    group.add_argument("--autoencoder", dest="autoencoder",
                       action=argparse.BooleanOptionalAction, default=None,
                       help="older spelling of --family gmmn-ae (--no-autoencoder: gmmn)")
    group.add_argument("--gan", dest="gan", action=argparse.BooleanOptionalAction,
                       default=None, help="older spelling of --family gan")
    group.add_argument("--baseline", dest="baseline", default=None,
                       help="older spelling of --family dbn, scae or gsn (none: gmmn)")
    for name, hint in field_types().items():
        if name in _OWN:
            continue
        flag = config_flag(name)
        if _base(hint) is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=field_help(name))
        else:
            group.add_argument(flag, dest=name, type=_parser_for(name, hint), default=None,
                               metavar=name.upper(), help=field_help(name))


def config_overrides(args: argparse.Namespace) -> dict:
    """The config fields given on the command line."""
    out = {}
    for name in field_types():
        if name in _OWN:
            continue
        value = getattr(args, name, None)
        if value is not None:
            out[name] = None if value is _NONE else value
    return out


def family_flag(args: argparse.Namespace, current: str) -> str | None:
    """The family asked for by --family or one of its older spellings (None: the preset's,
    ``current``). As the flat layout's switches did, ``--no-autoencoder``, ``--no-gan`` and
    ``--baseline none`` leave only their own family (for a data-space GMMN) and change
    nothing otherwise."""
    asked = []
    if getattr(args, "family", None) is not None:
        asked.append(args.family)
    if getattr(args, "autoencoder", None) is not None:
        asked.append("gmmn-ae" if args.autoencoder else
                     "gmmn" if current == "gmmn-ae" else current)
    if getattr(args, "gan", None) is not None:
        asked.append("gan" if args.gan else "gmmn" if current == "gan" else current)
    baseline = getattr(args, "baseline", None)
    if baseline is not None:
        if baseline.lower() != "none" and baseline not in _BASELINES:
            raise ConfigError(f"unknown --baseline {baseline!r}; choose "
                              f"{', '.join(_BASELINES)} or none")
        asked.append(baseline if baseline.lower() != "none" else
                     "gmmn" if current in _BASELINES else current)
    if len(set(asked)) > 1:
        raise ConfigError(f"the flags ask for more than one model family ({', '.join(asked)}); "
                          f"a run trains one: keep one of them")
    return asked[0] if asked else None


# The preset whose values `gmmn train --help` shows as the defaults when no --preset is given:
# the one a run without --preset (on the user's own file) uses.
DEFAULT_PRESET = TABULAR_PRESET


def register(subparsers) -> None:
    from gmmn.presets import PRESETS

    # The generated usage lists all 60 flags (45 lines); the help below lists them anyway.
    p = subparsers.add_parser("train", help="train a model (GMMN, GMMN+AE, GAN or a baseline) "
                                            "from a preset",
                              description=__doc__,
                              usage="%(prog)s [--preset PRESET] [--out OUT] [--resume] "
                                    "[FLAGS ...]")
    p.add_argument("--preset", action=_PresetAction,
                   help=f"named configuration: {', '.join(PRESETS)} (see docs/training.md); "
                        "`gmmn train --preset P --help` shows P's values as the defaults")
    p.add_argument("--out", default=None, help="run directory (default: runs/PRESET)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar or progress lines; the start and end of each stage "
                        "are still printed")
    p.add_argument("--no-download", action="store_true",
                   help="never download MNIST or Fashion-MNIST: missing files are an error")
    add_config_flags(p)
    show_preset_defaults(p, None)
    p.set_defaults(handler=run)


class _PresetAction(argparse.Action):
    """Stores --preset, and shows that preset's values in the help of a --help after it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        show_preset_defaults(parser, values)


def show_preset_defaults(parser: argparse.ArgumentParser, preset: str | None) -> None:
    """Write the values of ``preset`` (None: :data:`DEFAULT_PRESET`) into the help of the
    config flags, as "(default: VALUE)"; an unknown name changes nothing (the run reports it).
    """
    from gmmn.cli.text import show_default
    from gmmn.presets import PRESETS

    cfg = PRESETS.get(preset or DEFAULT_PRESET)
    if cfg is None:
        return
    source = f"preset {cfg.preset}'s value"
    values = cfg.flat()
    title = f"config fields (default: {source}" + (")" if preset else "; with --preset P, P's)")
    names = set(field_types()) - set(_OWN)
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.dest in names
                   and a.option_strings[:1] == [config_flag(a.dest)]]
        if actions:
            group.title = title
        for action in actions:
            flag = config_flag(action.dest)
            if action.dest not in values:
                action.help = (f"{field_help(action.dest)} (not a setting of family "
                               f"{cfg.family})")
                continue
            value = values[action.dest]
            if isinstance(action, argparse.BooleanOptionalAction) and value is not None:
                shown = flag if value else f"--no-{flag[2:]}"  # the flag that gives it
            elif action.dest == "sigmas" and value is None:
                shown = "median"  # what parse_sigmas reads as None
            else:
                shown = show_default(value)
            action.help = (f"{field_help(action.dest, cfg.family)} "
                           f"(default: {shown.replace('%', '%%')})")


def build_config(args: argparse.Namespace, out: str
                 ) -> tuple[TrainConfig, tuple[TrainConfig, dict] | None]:
    """The run's config, and the stored config and checkpoint of ``out`` when resuming one
    (read once, here).

    Resuming starts from the stored config; a ``--preset`` that differs from the stored one
    is refused where every resume is checked (:func:`gmmn.training.run.run_training`).
    """
    from gmmn.presets import get_preset
    from gmmn.training.rundir import load_resume

    overrides = config_overrides(args)
    loaded = load_resume(out) if args.resume else None
    if loaded is not None:
        base = loaded[0]
        if args.preset is not None:
            base = dataclasses.replace(base, preset=args.preset)
    else:
        base = get_preset(_preset_of(args))
    family = family_flag(args, base.family) or base.family
    return switch_family(base, family, **overrides), loaded


def _preset_of(args: argparse.Namespace) -> str:
    """--preset, or the tabular preset (settings chosen from the data) when --dataset names
    the user's own file or folder; the benchmark datasets have their papers' presets."""
    from gmmn.data import DATASETS

    if args.preset is not None:
        return args.preset
    dataset = getattr(args, "dataset", None)
    if dataset is None or str(dataset).lower() in DATASETS:
        what = f"--dataset {dataset}" if dataset else "a run without --dataset"
        named = f"{dataset.lower()}-gmmn" if dataset else "digits-gmmn-ae"
        raise ConfigError(f"--preset is required for {what} (e.g. --preset {named}); without "
                          f"--preset, --dataset must name your own file or folder")
    return DEFAULT_PRESET


def run(args: argparse.Namespace) -> int:
    from gmmn.training.distributed import check_config, env_world, launch
    from gmmn.training.run import run_training

    out = args.out or f"runs/{args.preset or (DEFAULT_PRESET if args.dataset else 'run')}"
    with launch() as hooks:  # data-parallel under torchrun (docs/distributed.md)
        # Only worker 0 logs, shows progress and writes files. Quieten the package's logger
        # on the others, not the root (torch's and the caller's own loggers are not ours),
        # and only for this run: its level is restored however the run ends.
        gmmn_log = logging.getLogger("gmmn")
        gmmn_level = gmmn_log.level
        if not hooks.main:
            gmmn_log.setLevel(logging.ERROR)
        loaded: dict = {}  # the checkpoint stays on worker 0, which alone reads the folder

        def config() -> TrainConfig:
            cfg, loaded["state"] = build_config(args, out)
            return cfg

        progress = None
        try:
            cfg = hooks.from_main(config)
            _, world, local = env_world()
            check_config(cfg, world, local_rank=local)
            progress = (TrainingProgress(mode="stages" if args.no_progress else "auto")
                        if hooks.main else None)
            result = run_training(cfg, out_dir=out, resume=args.resume, hooks=hooks,
                                  callback=progress.update if progress else None,
                                  checkpoint=loaded.get("state"),
                                  download=not args.no_download)
        finally:
            if progress:
                progress.close()
            gmmn_log.setLevel(gmmn_level)
    if not hooks.main:
        return 0
    if result.chosen:
        from gmmn.training.auto import show_value

        shown = "; ".join(f"{config_flag(k)} {show_value(v)}" for k, v in result.chosen.items())
        print(f"chosen from the data: {shown} (config.json records them)")
    if result.fit_check is not None and result.fit_check.failed:
        raise result.fit_check.error(f"the run is kept in {out}: gmmn sample and gmmn "
                                     f"evaluate read it")
    print(f"trained {result.config.preset} on {result.data['name']} "
          f"({result.data['dim']} dimensions): {out}/checkpoint.pt")
    return 0
