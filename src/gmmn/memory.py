"""Refusing work that cannot fit in memory before allocating it.

An allocation far beyond the machine's memory either fails deep inside torch or numpy with a
traceback, or (with overcommit) succeeds and lets the kernel's OOM killer end the process
without a word. :func:`check_fits` compares a lower bound of the bytes a step needs with the
memory available now and refuses with one sentence. The bound is deliberately low, so only
work that cannot possibly fit is refused.
"""

from __future__ import annotations

import os

import torch

from gmmn.errors import ConfigError, GMMNError


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory on ``device`` now (CPU: MemAvailable), or None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def check_fits(nbytes: float, *, what: str, fix: str, device: torch.device | str = "cpu",
               error: type[GMMNError] = ConfigError) -> None:
    """Raise ``error`` when ``nbytes`` exceed the memory available on ``device``."""
    free = available_bytes(device)
    if free is not None and nbytes > free:
        raise error(f"{what} needs at least {human_bytes(nbytes)} of memory but "
                    f"{human_bytes(free)} is available; {fix}")
