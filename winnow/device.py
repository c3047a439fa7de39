"""Where work runs: the torch device for a `device` option, and the cores this process may use."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from winnow.errors import ConfigError

if TYPE_CHECKING:
    import torch


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask on Linux, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


MAX_DECODE_THREADS = 16  # FFmpeg's own cap for automatic decoder threads


def decode_threads(decoders: int = 1) -> int:
    """Codec threads for each of `decoders` videos decoded at once on this host.

    The one rule for sizing decoders (engine and media): the available cores shared out evenly,
    `max(1, min(16, cores // decoders))`, so many decoders never oversubscribe the host (e.g. 16
    cores: 1 decoder 16 threads, 4 decoders 4 each, 8 decoders 2 each, 32 decoders 1 each).

    Args:
        decoders: Videos decoded at the same time in this process.
    """
    return max(1, min(MAX_DECODE_THREADS, available_cores() // max(1, decoders)))


def resolve_device(device: str) -> torch.device:
    """The torch device for a `device` option: `auto`, `cpu`, `cuda` or `cuda:N`.

    Raises:
        ConfigError: If the name is not a CPU or CUDA device, or CUDA is asked for but this
            process has no usable CUDA GPU.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} but this worker has no usable CUDA GPU (torch.cuda.is_available() "
            "is False); use device='auto' or 'cpu', or run on a GPU work pool"
        )
    return dev
