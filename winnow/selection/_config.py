"""The selection parameters: `SelectionConfig` and the strategies it accepts.

`SelectionConfig.strategies` accepts any registered strategy model, told apart by its `type`
(a discriminated union: one form per strategy in the Prefect UI). The union is looked up in the
registry when a value is validated and when a schema is made, not frozen when the class is
built: `SelectionConfig` (and every model that embeds it, such as the flows' parameters) is
built once, and a strategy registered later, before the deployment's schema is made, is in the
UI form too.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from pydantic_core import core_schema

from winnow.selection import _registry, _strategies  # noqa: F401 (registers the built-ins)
from winnow.selection._predictions import KNOWN_COLUMNS, OBJECT_COLUMNS, _predictions_format
from winnow.selection._registry import Needs
from winnow.selection._strategies import DiversityStrategy, HerdingStrategy

DEFAULT_MAX_CANDIDATES = 50_000
"""The default's size rule: herding up to this many eligible candidates, k-center above.

Herding costs candidates × 5,000 evaluation rows for its first pick and about candidates ×
5,000 / picks for each later one (k-center: candidates × dataset, then candidates per pick).
The side-by-side timings behind the number are in the README ("Which strategy when") and come
from `bench/selection_quality.py --scale`.
"""


@functools.cache
def _union(models: tuple[type[_registry.BaseStrategy], ...]) -> TypeAdapter:
    """The strategy models as one union, discriminated by `type` (one adapter per registry)."""
    return TypeAdapter(
        Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]
    )


class Strategy:
    """Any registered strategy model, told apart by its `type` (as a pydantic annotation).

    Validation and the JSON schema use the registry as it is when they run; a value dumps as its
    own model does.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(
            lambda value, _: _union(_registry.models()).validate_python(value),
            core_schema.any_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value, info: value.model_dump(
                    mode="json" if info.mode_is_json() else "python"
                ),
                info_arg=True,
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return handler(_union(_registry.models()).core_schema)


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
        [HerdingStrategy(max_candidates=DEFAULT_MAX_CANDIDATES), DiversityStrategy(strength=0.5)],
        min_length=1,
        description="Ordered strategies, as in Lightly Worker: thresholds filter first; the "
        "others are combined greedily with score = product of objective^strength. The default, "
        "herding (kernel coverage with an automatic bandwidth) × diversity^0.5, was never below "
        "random or k-center in bench/selection_quality.py (pixels, weak and trained "
        "embeddings, video frames; cold and with a dataset); above 50,000 eligible candidates "
        "it runs as k-center. Diversity is plain k-center. A plain "
        'name ("herding", "coverage", "diversity", "random", "typicality") is accepted for '
        "strategies without required settings.",
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
    near_duplicate_scope: Literal["dataset", "pool"] = Field(
        "dataset",
        description="What near_duplicate_distance compares candidates with: `dataset` (the "
        "tags' members and earlier picks) or `pool` (also every sample the pool holds, tagged "
        "or not, through the pool's similarity index, whose 8-bit distances count within "
        "1.2 × near_duplicate_distance; exact search for small pools).",
    )
    selected_sequence_length: int | None = Field(
        None,
        ge=1,
        description="Select whole sequences of this many consecutive sampled frames of a video "
        "(embeddings averaged per sequence); n_samples and proportion then count frames, "
        "rounded down to whole sequences. Incomplete tails and single images are not eligible.",
    )
    unit: Literal["frame", "clip", "object"] = Field(
        "frame",
        description="What is picked: `frame`; `clip` — a shot of a video (from the pool's "
        "shot table, `frames.detect_shots`), or a window of clip_seconds inside a longer shot; "
        "its embedding is the mean of its kept frames', the dataset's clips count as already "
        "chosen, n_samples and proportion count clips, and every frame of a picked clip "
        "becomes a member of the tag. Images are not clips. `object` — a box from "
        "objects.predictions, embedded from its crop: the strategies rank objects, the "
        "objects of the dataset's frames count as already chosen, a picked object's frame is "
        "labelled whole (so all its objects count as chosen from then on), and n_samples and "
        "proportion count frames to label.",
    )
    clip_seconds: float = Field(
        10.0,
        gt=0,
        description="With unit clip: longest clip; a longer shot (or a video without shots) is "
        "cut into windows of this many seconds from its start.",
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
                for column in s.needs().columns:
                    if column in KNOWN_COLUMNS or column in OBJECT_COLUMNS:
                        continue
                    raise ValueError(
                        f"{s.type} strategy uses column {column!r}, which is not a metadata "
                        f"column ({', '.join(KNOWN_COLUMNS)}) nor an object column "
                        f"({', '.join(OBJECT_COLUMNS)}, from objects.predictions); set "
                        "`predictions` to a CSV/Parquet file that has it, or fix the name"
                    )
        else:
            _predictions_format(self.predictions, error=ValueError)
        if self.unit in ("clip", "object"):
            clash = [
                name
                for name, on in (
                    ("selected_sequence_length", self.selected_sequence_length is not None),
                    ("predictions", self.predictions is not None),
                    ("near_duplicate_scope pool", self.near_duplicate_scope == "pool"),
                )
                if on
            ]
            if clash:
                raise ValueError(
                    f"unit {self.unit} cannot be combined with {', '.join(clash)}: they work "
                    "on single frames (use unit frame)"
                )
        length = self.selected_sequence_length
        if length and self.n_samples is not None and self.n_samples < length:
            raise ValueError(
                f"n_samples {self.n_samples} is smaller than selected_sequence_length {length}: "
                "n_samples counts frames, so not even one sequence would fit"
            )
        return self

    def needs(self) -> Needs:
        """What selecting with this config needs besides the candidates' embeddings.

        The strategies' columns, query files and text queries, and the predictions file.
        """
        wanted = [s.needs() for s in self.strategies]
        return Needs(
            columns=tuple(dict.fromkeys(c for n in wanted for c in n.columns)),
            query_keys=tuple(dict.fromkeys(k for n in wanted for k in n.query_keys)),
            predictions=self.predictions,
            texts=tuple(dict.fromkeys(t for n in wanted for t in n.texts)),
        )
