"""The strategy registry: each strategy's parameter model and the scorer that serves it.

A strategy is one pydantic model (a `type` literal naming it, its settings) and one `Scorer`
registered for it. `SelectionConfig.strategies` is the discriminated union of the registered
models, and `select()` asks each strategy's scorer to check the run's inputs, then to filter the
candidates or to build its objective: nothing else in the package names a strategy (but the
k-center shortcut for diversity alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from winnow.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from winnow.selection._objectives import Inputs, Objective, Units


@dataclass(frozen=True)
class Needs:
    """What a selection needs besides the candidates' embeddings (callers provide it).

    Attributes:
        columns: Per-candidate columns read: metadata, or columns of the predictions file.
        query_keys: Files (keys in the source) whose embeddings the candidates are compared
            with; the caller decodes and embeds them with the run's model.
        predictions: The predictions file the columns come from (a config's, not a strategy's).
        texts: Text queries the candidates are compared with; the caller embeds them with the
            run's model's text tower.
    """

    columns: tuple[str, ...] = ()
    query_keys: tuple[str, ...] = ()
    predictions: str | None = None
    texts: tuple[str, ...] = ()


class BaseStrategy(BaseModel):
    """Base of the strategy models: subclasses add a `type` literal (the discriminator)."""

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(
        1.0,
        description="Exponent of this strategy's objective in the combined score (score = "
        "product of objective^strength over the strategies): larger gives it more say; a "
        "negative strength inverts its preference.",
    )

    @field_validator("strength")
    @classmethod
    def _check_strength(cls, value: float) -> float:
        if not math.isfinite(value) or value == 0:
            raise ValueError(
                f"strength {value!r} must be a finite non-zero number (remove the strategy to "
                "turn it off)"
            )
        return value

    def needs(self) -> Needs:
        """What the strategy reads besides embeddings (without a predictions file, metadata)."""
        return Needs()


class Scorer:
    """How one strategy model ranks (or filters) the candidates; register one per model.

    A ranking scorer overrides `objective`; a filter sets `filters = True` and overrides `keep`.
    Either may override `check` to reject unusable inputs before any work is done.

    Attributes:
        filters: True for a filter: `keep` is applied before everything else and the strategy
            takes no part in the ranking.
    """

    filters: ClassVar[bool] = False

    def check(self, strategy: BaseStrategy, inputs: Inputs) -> None:
        """Reject the run's inputs if they cannot serve `strategy` (called before any work).

        Raises:
            ConfigError: If a column is missing or unusable, or an input is absent.
        """

    def keep(self, strategy: BaseStrategy, table: dict[str, np.ndarray]) -> np.ndarray:
        """Filters only: a boolean mask of the candidates (rows of `table`) that pass."""
        raise NotImplementedError(f"{type(self).__name__} is not a filter")

    def objective(self, strategy: BaseStrategy, units: Units) -> Objective:
        """Ranking scorers only: the strategy's objective over the eligible units."""
        raise NotImplementedError(f"{type(self).__name__} does not rank")


_MODELS: dict[str, type[BaseStrategy]] = {}
_SCORERS: dict[str, Scorer] = {}


def _type_name(model: type[BaseStrategy]) -> str:
    field = model.model_fields.get("type")
    if not (isinstance(model, type) and issubclass(model, BaseStrategy)) or field is None:
        raise ConfigError(f"{model!r}: a strategy model subclasses BaseStrategy and has a `type`")
    if not isinstance(field.default, str) or not field.default:
        raise ConfigError(f"{model.__name__}.type needs its name as default, e.g. Field('name')")
    return field.default


def register(model: type[BaseStrategy], scorer: Scorer) -> None:
    """Make a strategy available: `SelectionConfig` accepts it, `select()` uses its scorer.

    Args:
        model: The strategy's parameter model: a `BaseStrategy` subclass whose `type` field is
            a literal with its name as default.
        scorer: The scorer that checks inputs for it and filters or ranks by it.

    Raises:
        ConfigError: If the model is not a strategy model or its name is already registered.
    """
    name = _type_name(model)
    if name in _MODELS:
        raise ConfigError(
            f"strategy {name!r} is already registered (by {_MODELS[name].__name__}); pick "
            "another type name"
        )
    _MODELS[name] = model
    _SCORERS[name] = scorer


def unregister(name: str) -> None:
    """Remove the strategy named `name` (its `type`); unknown names are ignored."""
    if _MODELS.pop(name, None) is not None:
        del _SCORERS[name]


def models() -> tuple[type[BaseStrategy], ...]:
    """The registered strategy models, in registration order."""
    return tuple(_MODELS.values())


def scorer_for(strategy: BaseStrategy) -> Scorer:
    """The scorer registered for a strategy instance."""
    return _SCORERS[strategy.type]  # type: ignore[attr-defined]


def ranking_names() -> list[str]:
    """Names of the registered strategies that rank (are not filters)."""
    return [name for name, scorer in _SCORERS.items() if not scorer.filters]
