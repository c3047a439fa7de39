"""The selection parameters: `SelectionConfig` and the union of the registered strategies.

`SelectionConfig.strategies` accepts any registered strategy model, told apart by its `type`
(a pydantic discriminated union: one form per strategy in the Prefect UI). Registering or
removing a strategy rebuilds the union; a model that embeds `SelectionConfig` (the flow's
parameters) keeps the union it was built with, so register strategies before it is imported.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from winnow.selection import _registry, _strategies  # noqa: F401 (registers the built-ins)
from winnow.selection._predictions import KNOWN_COLUMNS, _predictions_format
from winnow.selection._strategies import CoverageStrategy

DEFAULT_COVERAGE_MAX_CANDIDATES = 50_000
"""The default's size rule: coverage up to this many candidates the dataset leaves uncovered.

The δ-ball graph costs uncovered × candidates (k-center: candidates × dataset). Measured side by
side (bench/selection_quality.py --scale, 512-d clustered data, 2 idle CPU cores): at 200k
candidates × 100k dataset with 45,825 left uncovered (δ = 0.9), coverage took 1.46× k-center's
time; a cold start over 200k candidates would cost candidates², so it runs as k-center.
"""


def _strategy_union() -> Any:
    """The registered strategy models as one union, discriminated by `type`."""
    union = functools.reduce(operator.or_, _registry.models())
    return Annotated[union, Field(discriminator="type")]


Strategy = _strategy_union()
"""Any registered strategy (as of import; `SelectionConfig` follows later registrations)."""


def _only_filters_message(strategies: list[Any]) -> str:
    kinds = " and ".join(sorted({s.type for s in strategies}))
    names = _registry.ranking_names()
    rankers = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)
    return f"only {kinds} strategies given: {kinds}s filter, they do not rank; add {rankers}"


class SelectionConfig(BaseModel):
    """What to pick from a run's candidates: strategies, stopping rules, deduplication."""

    model_config = ConfigDict(extra="forbid", title="Selection")

    n_samples: int | None = Field(
        50,
        ge=1,
        description="Stop after this many picks (frames). Defaults to 50 only when neither "
        "proportion nor min_distance is given; when several stopping rules are set, the first "
        "one reached stops.",
    )
    proportion: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop after this share (0, 1] of the run's candidates (rounded, at least 1).",
    )
    min_distance: float | None = Field(
        None,
        gt=0,
        le=2,
        description="Stop when no remaining candidate is at least this far (L2 between unit "
        "embeddings, 0..2) from the dataset and the picks so far.",
    )
    strategies: list[Strategy] = Field(
        [CoverageStrategy(when_covered="farthest", max_candidates=DEFAULT_COVERAGE_MAX_CANDIDATES)],
        min_length=1,
        description="Ordered strategies, as in Lightly Worker: thresholds filter first; the "
        "others are combined greedily with score = product of objective^strength. The default, "
        "coverage (ProbCover), gave the best 1-NN accuracy per label in bench/"
        "selection_quality.py; above 50,000 candidates the dataset leaves uncovered it runs as "
        "k-center (its δ-ball graph costs uncovered × candidates, k-center candidates × "
        "dataset). Diversity is plain k-center. A plain "
        'name ("coverage", "diversity", "random", "typicality") is accepted for strategies without '
        "required settings.",
    )
    seed: int = Field(
        0, ge=0, description="Seed of every random choice (random strategy, baselines, samples)."
    )
    remove_exact_duplicates: bool = Field(
        True,
        description="Drop candidates whose decoded pixels are identical (same content hash) to "
        "an earlier candidate; the first one is kept.",
    )
    near_duplicate_distance: float | None = Field(
        None,
        gt=0,
        le=2,
        description="Never pick a candidate closer than this to a dataset sample or to an "
        "earlier pick (L2 between unit embeddings, 0..2); e.g. 0.05 for near-identical "
        "frames. Empty: off.",
    )
    selected_sequence_length: int | None = Field(
        None,
        ge=1,
        description="Select whole sequences of this many consecutive sampled frames of a video "
        "(embeddings averaged per sequence); n_samples and proportion then count frames, "
        "rounded down to whole sequences. Incomplete tails and single images are not eligible.",
    )
    predictions: str | None = Field(
        None,
        min_length=1,
        description="CSV or Parquet file (key relative to the source, or a URL) with a "
        "`filename` column (and optionally `frame_index`) whose other columns (scores, labels) "
        "can be used by weights, threshold and balance strategies.",
        examples=["predictions/labels.csv"],
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        others = data.get("proportion") is not None or data.get("min_distance") is not None
        if "n_samples" not in data and others:
            data["n_samples"] = None
        return data

    @field_validator("strategies", mode="before")
    @classmethod
    def _names_to_strategies(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                item = {"type": item.strip().lower()}
            elif isinstance(item, dict) and isinstance(item.get("type"), str):
                item = {**item, "type": item["type"].strip().lower()}
            out.append(item)
        return out

    @model_validator(mode="after")
    def _check(self) -> SelectionConfig:
        if self.n_samples is None and self.proportion is None and self.min_distance is None:
            raise ValueError(
                "no stopping rule: set n_samples, proportion or min_distance (or several)"
            )
        if all(_registry.scorer_for(s).filters for s in self.strategies):
            raise ValueError(_only_filters_message(self.strategies))
        ranking = [s for s in self.strategies if not _registry.scorer_for(s).filters]
        refined = [s for s in ranking if getattr(s, "local_search_rounds", None)]
        if refined and (len(ranking) > 1 or refined[0].strength < 0):
            raise ValueError(
                "diversity local_search_rounds lowers the coverage radius of plain k-center: "
                "use it with diversity (positive strength) as the only ranking strategy, or "
                "remove it"
            )
        if self.predictions is None:
            for s in self.strategies:
                for column in s.columns():
                    if column in KNOWN_COLUMNS:
                        continue
                    raise ValueError(
                        f"{s.type} strategy uses column {column!r}, which is not a metadata "
                        f"column ({', '.join(KNOWN_COLUMNS)}); set `predictions` to a CSV/"
                        "Parquet file that has it, or fix the name"
                    )
        else:
            _predictions_format(self.predictions, error=ValueError)
        length = self.selected_sequence_length
        if length and self.n_samples is not None and self.n_samples < length:
            raise ValueError(
                f"n_samples {self.n_samples} is smaller than selected_sequence_length {length}: "
                "n_samples counts frames, so not even one sequence would fit"
            )
        return self


def _refresh_strategies() -> None:
    """Rebuild `SelectionConfig` so that `strategies` accepts exactly the registered models."""
    global Strategy
    Strategy = _strategy_union()
    SelectionConfig.model_fields["strategies"].annotation = list[Strategy]
    SelectionConfig.model_rebuild(force=True)


_registry.on_change(_refresh_strategies)
