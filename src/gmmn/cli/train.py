"""``gmmn train``: run a preset, with any config field overridden by its flag.

Flags are generated from :class:`gmmn.config.TrainConfig`'s fields, so ``--data-batch-size``
is the field ``data_batch_size`` and the key ``data_batch_size`` of config.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing

from gmmn.config import TrainConfig, field_help, field_types
from gmmn.config import flag as config_flag
from gmmn.errors import ConfigError

# Flags this command defines itself (not generated from the config).
_OWN = ("preset",)


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

    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        pass
    try:
        return tuple(paper_sigmas(text))
    except MMDError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config fields (default: the preset's value)")
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


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a GMMN or GMMN+AE from a preset",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    from gmmn.presets import PRESETS

    p.add_argument("--preset", help=f"named configuration: {', '.join(PRESETS)} "
                                    f"(see docs/training.md)")
    p.add_argument("--out", default=None, help="run directory (default: runs/PRESET)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(handler=run)


def build_config(args: argparse.Namespace, out: str) -> tuple[TrainConfig, dict | None]:
    """The run's config, and the checkpoint of ``out`` when resuming one (read once, here).

    Resuming starts from the stored config; a ``--preset`` that differs from the stored one
    is refused where every resume is checked (:func:`gmmn.training.run.run_training`).
    """
    from gmmn.presets import get_preset
    from gmmn.training.run import load_resume

    overrides = config_overrides(args)
    loaded = load_resume(out) if args.resume else None
    if loaded is not None:
        base, state = loaded
        if args.preset is not None:
            base = dataclasses.replace(base, preset=args.preset)
    else:
        if args.preset is None:
            raise ConfigError("--preset is required (e.g. --preset digits-gmmn-ae)")
        base, state = get_preset(args.preset), None
    try:
        return dataclasses.replace(base, **overrides), state
    except TypeError as exc:  # pragma: no cover - flags are generated from the fields
        raise ConfigError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    from gmmn.training.distributed import check_config, env_world, launch
    from gmmn.training.run import run_training

    out = args.out or f"runs/{args.preset or 'run'}"
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
            progress = None if args.no_progress or not hooks.main else _Progress()
            result = run_training(cfg, out_dir=out, resume=args.resume, hooks=hooks,
                                  callback=progress.update if progress else None,
                                  checkpoint=loaded.get("state"))
        finally:
            if progress:
                progress.close()
            gmmn_log.setLevel(gmmn_level)
    if hooks.main:
        print(f"trained {cfg.preset} on {result.data['name']} "
              f"({result.data['dim']} dimensions): {out}/checkpoint.pt")
    return 0


class _Progress:
    """One tqdm bar per stage, showing the loss every few iterations and the rate."""

    def __init__(self) -> None:
        self.bar = None
        self.stage = None

    def update(self, step) -> None:
        from tqdm import tqdm

        if step.stage != self.stage:
            self.close()
            self.stage = step.stage
            self.bar = tqdm(total=step.iterations, initial=step.iteration - 1, desc=step.stage,
                            unit="it", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(1)
        if step.iteration % 10 == 0 or step.iteration == step.iterations:
            losses = {k: f"{float(v):.4g}" for k, v in step.losses.items()}
            self.bar.set_postfix(losses, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
