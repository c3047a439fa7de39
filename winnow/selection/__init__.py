"""Selection: which of this run's candidates are worth labelling, and why.

The run's candidates are filtered (filter strategies such as metadata thresholds, exact and
near duplicates, samples the dataset already holds), then picked one at a time by the product
of the ranking strategies' objectives, each raised to its strength, as in Lightly Worker's
selection. The distance of every candidate to the nearest dataset-or-picked sample is kept
current throughout, so every pick records how far it was from what the dataset already
covered, and the run reports its coverage radius before and after.

Distances are Euclidean; embeddings are L2-normalised, so they lie in [0, 2]. The heavy work is
done in torch (CUDA when present): distances to the dataset as tiled matrix products (exact,
O(N) memory), and the greedy loop with a float16 filter whose error bound sends every row the
new center might move to an exact float32 recomputation, so picks equal a plain float32
greedy. `torch` is imported lazily: loading the parameter models must stay cheap.

Strategies are a registry: a new one is a `BaseStrategy` subclass (its `type` literal and
settings) and a `Scorer` subclass (its `objective`, or `keep` for a filter, and optional
`check`), joined by `register(Model, Scorer())` in one module; `SelectionConfig` then accepts
it and `select()` ranks by it. See `_strategies.py` for the built-in ones.
"""

from winnow.selection._config import SelectionConfig, Strategy
from winnow.selection._distances import DEFAULT_BLOCK_ROWS, coverage_radius, nearest_distances
from winnow.selection._kcenter import kcenter_greedy
from winnow.selection._objectives import Inputs, Objective, Units
from winnow.selection._predictions import KNOWN_COLUMNS, OBJECT_COLUMNS, join_predictions
from winnow.selection._registry import BaseStrategy, Needs, Scorer, register, unregister
from winnow.selection._select import select
from winnow.selection._strategies import (
    BalanceStrategy,
    CoverageStrategy,
    DiversityStrategy,
    HerdingStrategy,
    RandomStrategy,
    SimilarityStrategy,
    ThresholdStrategy,
    TypicalityStrategy,
    WeightsStrategy,
)
from winnow.selection._uncertainty import UncertaintyStrategy

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "KNOWN_COLUMNS",
    "OBJECT_COLUMNS",
    "BalanceStrategy",
    "BaseStrategy",
    "CoverageStrategy",
    "DiversityStrategy",
    "HerdingStrategy",
    "Inputs",
    "Needs",
    "Objective",
    "RandomStrategy",
    "Scorer",
    "SelectionConfig",
    "SimilarityStrategy",
    "Strategy",
    "ThresholdStrategy",
    "TypicalityStrategy",
    "UncertaintyStrategy",
    "Units",
    "WeightsStrategy",
    "coverage_radius",
    "join_predictions",
    "kcenter_greedy",
    "nearest_distances",
    "register",
    "select",
    "unregister",
]
