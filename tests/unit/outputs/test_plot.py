"""The embedding plot on its own (outputs._plot)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.outputs.conftest import DIM, _unit
from winnow import outputs


def test_embedding_plot_is_deterministic_and_subsampled_above_the_cap():
    rng = np.random.default_rng(5)
    dataset, picks, rest = _unit(rng, 3000), _unit(rng, 20), _unit(rng, 2000)
    png = outputs.render_embedding_plot(dataset=dataset, picks=picks, rest=rest, max_points=800)
    again = outputs.render_embedding_plot(dataset=dataset, picks=picks, rest=rest, max_points=800)
    assert png == again
    assert png.startswith(b"\x89PNG")
    empty = outputs.render_embedding_plot(
        dataset=np.zeros((0, 0)), picks=np.zeros((0, DIM)), rest=np.zeros((0, DIM))
    )
    assert empty.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="different widths"):
        outputs.render_embedding_plot(dataset=_unit(rng, 3), picks=np.ones((2, 3)), rest=rest)
