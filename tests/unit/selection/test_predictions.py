"""Predictions files joined onto the candidates."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.unit.selection.conftest import make_candidates, unit
from winnow import selection
from winnow.errors import ConfigError

CSV = b"""filename,frame_index,score,label
cam/a.mp4,0,0.9,car
cam/a.mp4,1,0.1,bike
./img.jpg,,0.5,car
"""


def test_join_predictions_matches_file_and_frame_and_leaves_missing_rows_empty():
    cands = make_candidates(
        unit(4, 4, 0), keys=["cam/a.mp4", "cam/a.mp4", "img.jpg", "other.jpg"], frames=[0, 1, 0, 0]
    )
    cols = selection.join_predictions(cands, CSV, filename="preds.csv")
    assert cols["score"][:3].tolist() == [0.9, 0.1, 0.5] and math.isnan(cols["score"][3])
    assert cols["label"].tolist() == ["car", "bike", "car", None]
    table = pa.table({"filename": ["cam/a.mp4", "img.jpg"], "score": [0.3, None]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    cols = selection.join_predictions(cands, buf.getvalue(), filename="s3://b/p.parquet")
    assert cols["score"][:2].tolist() == [0.3, 0.3] and np.isnan(cols["score"][2:]).all()


@pytest.mark.parametrize(
    ("data", "filename", "match"),
    [
        (b"key,score\na.jpg,1\n", "p.csv", "no 'filename' column"),
        (b"filename,score\na.jpg,1\na.jpg,2\n", "p.csv", "two rows for a.jpg"),
        (b"filename\na.jpg\n", "p.json", "use a .csv or .parquet"),
        (b"not parquet", "p.parquet", "cannot be read as parquet"),
    ],
)
def test_join_predictions_rejects_bad_files(data, filename, match):
    with pytest.raises(ConfigError, match=match):
        selection.join_predictions(make_candidates(unit(1, 4, 0)), data, filename=filename)
