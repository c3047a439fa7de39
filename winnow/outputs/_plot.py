"""The embedding plot: a deterministic 2-D PCA projection of dataset, picks and the rest."""

from __future__ import annotations

import io

import numpy as np

MAX_PLOT_POINTS = 20_000


def _even_subsample(n: int, k: int) -> np.ndarray:
    """`k` evenly spaced row indices out of `n` (all of them when `k >= n`); deterministic."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 0)).round().astype(np.int64))


def _as_points(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.zeros((0, dim))
    return np.nan_to_num(x.reshape(len(x), -1))


def _pca_2d(points: np.ndarray) -> np.ndarray:
    """Project rows on their first two principal axes (scikit-learn's PCA; signs fixed by it)."""
    from sklearn.decomposition import PCA

    n, d = points.shape
    out = np.zeros((n, 2))
    components = min(2, d, n)
    if components == 0:
        return out
    out[:, :components] = PCA(n_components=components, svd_solver="full").fit_transform(points)
    return out


def render_embedding_plot(
    *,
    dataset: np.ndarray,
    picks: np.ndarray,
    rest: np.ndarray,
    title: str = "",
    max_points: int = MAX_PLOT_POINTS,
) -> bytes:
    """Draw a 2-D PCA projection of the embedding space as a PNG.

    The existing dataset is drawn in grey, the run's other candidates faint and the picks in
    colour on top. The projection is fitted on all points drawn. Above `max_points` points the
    picks are kept (up to the cap) and the dataset and the rest are subsampled, evenly and
    deterministically, in proportion to their sizes; the legend gives the full counts.

    Args:
        dataset: (M, D) embeddings of the dataset before the run; M may be 0.
        picks: (P, D) embeddings of this run's picks.
        rest: (R, D) embeddings of this run's candidates that were not picked.
        title: Title of the figure.
        max_points: Most points drawn.

    Returns:
        PNG bytes (matplotlib, Agg backend; pyplot's global state is not touched).

    Raises:
        ValueError: If the non-empty inputs differ in embedding width.
    """
    widths = {np.asarray(x).shape[1] for x in (dataset, picks, rest) if np.asarray(x).size}
    if len(widths) > 1:
        raise ValueError(f"embeddings of different widths: {sorted(widths)}")
    dim = widths.pop() if widths else 0
    sets = [_as_points(x, dim) for x in (dataset, picks, rest)]
    counts = [len(s) for s in sets]
    n_picks = min(counts[1], max_points)
    budget = max_points - n_picks
    others = counts[0] + counts[2]
    shown = [
        _even_subsample(counts[0], budget * counts[0] // others if others else 0),
        _even_subsample(counts[1], n_picks),
        _even_subsample(counts[2], budget * counts[2] // others if others else 0),
    ]
    drawn = [s[idx] for s, idx in zip(sets, shown, strict=True)]
    xy = _pca_2d(np.concatenate(drawn)) if dim else np.zeros((sum(map(len, drawn)), 2))
    bounds = np.cumsum([0] + [len(d) for d in drawn])
    parts = [xy[bounds[j] : bounds[j + 1]] for j in range(3)]
    return _draw_plot(parts, counts, title)


def _draw_plot(parts: list[np.ndarray], counts: list[int], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # (label, style) for dataset, picks, rest; drawn dataset, rest, then picks on top.
    styles = [
        ("dataset before this run", {"s": 5, "c": "#8a8a8a", "alpha": 0.45, "zorder": 1}),
        ("picked in this run", {"s": 22, "c": "#e4572e", "alpha": 0.95, "zorder": 3}),
        ("other candidates of this run", {"s": 5, "c": "#4c78a8", "alpha": 0.15, "zorder": 2}),
    ]
    for j in (0, 2, 1):
        (label, style), pts, n = styles[j], parts[j], counts[j]
        label += f" ({n:,}" + (f", {len(pts):,} drawn)" if len(pts) < n else ")")
        ax.scatter(pts[:, 0], pts[:, 1], label=label, linewidths=0, rasterized=True, **style)
    if not any(counts):
        ax.text(0.5, 0.5, "no embeddings", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title or "embedding space (PCA)")
    legend = ax.legend(loc="best", fontsize=8, framealpha=0.85, markerscale=1.5)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
