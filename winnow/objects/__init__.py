"""Objects: boxes on frames (from a detector's predictions) as samples of their own.

Predictions are parsed into `Box`es (`_formats`), attached to the planned files, cut from the
full-resolution frames while decoding (`_crops`), embedded in the same batches as the frames,
stored in the pool's `objects` table, and selected with `selection.unit: object`.

This package's `__init__` imports only modules that do not import `winnow.records` (which
imports `Box` from here).
"""

from winnow.objects._boxes import Box, PredictionSet, object_id_for
from winnow.objects._options import CropSettings, ObjectOptions

__all__ = ["Box", "CropSettings", "ObjectOptions", "PredictionSet", "object_id_for"]
