"""Exact Euclidean distances in tiles: O(N + tile) memory whatever the number of centers.

`torch` is imported inside the functions: importing the package (for its parameter models)
must stay cheap.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from winnow.device import available_cores, resolve_device
from winnow.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEFAULT_BLOCK_ROWS = 4096
"""Candidate rows per tile of the distance computations (tiles are 4,096 × 8,192 floats)."""

_BLOCK_COLS = 8192  # centers per tile


@contextlib.contextmanager
def _compute(device: torch.device) -> Iterator[None]:
    """Use every core the process may run on and exact float32 matmuls (no TF32)."""
    import torch

    threads = torch.get_num_threads()
    want = available_cores()
    precision = torch.get_float32_matmul_precision()
    if device.type == "cpu" and want != threads:
        torch.set_num_threads(want)
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_float32_matmul_precision(precision)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _as_matrix(
    a: Any, name: str, *, dim: int | None = None, allow_empty: bool = False
) -> np.ndarray:
    """Validate a 2-D finite real matrix; `allow_empty` accepts any array of size 0 as (0, dim)."""
    arr = np.asarray(a)
    if allow_empty and arr.size == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (rows × dims), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ConfigError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if dim is not None and arr.shape[1] != dim:
        raise ConfigError(f"{name} has {arr.shape[1]} dims but the candidates have {dim}")
    if len(arr) and arr.shape[1] == 0:
        raise ConfigError(f"{name} has rows of width 0")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} holds NaN or infinite values; re-embed or drop those rows")
    return arr


def _check_block_rows(block_rows: int) -> None:
    if not isinstance(block_rows, int | np.integer) or block_rows < 1:
        raise ConfigError(f"block_rows must be an integer >= 1, got {block_rows!r}")


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=torch.float32)


def _nearest_sqdist(
    x: torch.Tensor,
    sqx: torch.Tensor,
    centers: np.ndarray | torch.Tensor,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> torch.Tensor:
    """Squared distance from each row of `x` to its nearest center (inf without centers)."""
    import torch

    n = len(x)
    if len(centers) == 0:
        return torch.full((n,), math.inf, device=x.device)
    # Algorithm: argmin_c |x - c|² = argmax_c (x·c - |c|²/2), one addmm per tile; a running max
    # per row keeps memory at O(N + tile) whatever the number of centers.
    best = torch.full((n,), -math.inf, device=x.device)
    buf = None
    for j in range(0, len(centers), _BLOCK_COLS):
        c = centers[j : j + _BLOCK_COLS]
        c = c.to(x.device, torch.float32) if isinstance(c, torch.Tensor) else _tensor(c, x.device)
        bias = (c * c).sum(1).mul_(-0.5)
        ct = c.T
        for i in range(0, n, block_rows):
            xb = x[i : i + block_rows]
            if buf is None or buf.shape != (len(xb), len(c)):
                buf = torch.empty((len(xb), len(c)), device=x.device)
            torch.addmm(bias, xb, ct, out=buf)
            part = best[i : i + block_rows]
            torch.maximum(part, buf.amax(1), out=part)
    return (sqx - 2 * best).clamp_min_(0)


def _nearest_other(x: torch.Tensor) -> np.ndarray:
    """Distance of each row to the nearest other row (inf for a single row)."""
    import torch

    n = len(x)
    sq = (x * x).sum(1)
    out = np.empty(n)
    for s in range(0, n, 2048):
        xb = x[s : s + 2048]
        d2 = (sq[s : s + 2048, None] + sq[None, :] - 2 * (xb @ x.T)).clamp_min_(0)
        rows = torch.arange(len(xb), device=x.device)
        d2[rows, rows + s] = math.inf
        out[s : s + len(xb)] = d2.amin(1).sqrt_().double().cpu().numpy()
    return out


def nearest_distances(
    x: np.ndarray,
    centers: np.ndarray,
    *,
    device: str = "auto",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> np.ndarray:
    """Distance from each row of `x` to its nearest row of `centers`, computed in tiles.

    Memory is O(N + tile): no N × M matrix is ever formed.

    Args:
        x: (N, D) points.
        centers: (M, D) centers; an empty array means no centers.
        device: `auto` (CUDA when present), `cpu` or `cuda[:N]`.
        block_rows: Rows of `x` per tile.

    Returns:
        float32 array (N,) of Euclidean distances (inf everywhere when there is no center).

    Raises:
        ConfigError: Shapes disagree, values are not finite, or the device is unusable.
    """
    xa = _as_matrix(x, "x")
    ca = _as_matrix(centers, "centers", dim=xa.shape[1], allow_empty=True)
    _check_block_rows(block_rows)
    dev = resolve_device(device)
    with _compute(dev):
        xt = _tensor(xa, dev)
        d2 = _nearest_sqdist(xt, (xt * xt).sum(1), ca, block_rows=block_rows)
        return d2.sqrt_().cpu().numpy()


def coverage_radius(
    x: np.ndarray,
    centers: np.ndarray,
    *,
    device: str = "auto",
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> float:
    """Coverage radius: the largest distance from a row of `x` to its nearest center.

    Args:
        x: (N, D) points to cover.
        centers: (M, D) centers; an empty array means no centers.
        device: `auto` (CUDA when present), `cpu` or `cuda[:N]`.
        block_rows: Rows of `x` per tile.

    Returns:
        The radius; 0.0 when `x` is empty, inf when there is no center.

    Raises:
        ConfigError: Shapes disagree, values are not finite, or the device is unusable.
    """
    distances = nearest_distances(x, centers, device=device, block_rows=block_rows)
    if np.asarray(centers).size == 0:
        return math.inf
    return float(distances.max()) if len(distances) else 0.0
