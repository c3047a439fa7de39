"""Model lifecycle: self-supervised training on a pool's own frames, re-embedding, re-selection.

One module a concern:
```
_params.py    TrainOptions/TrainParams, ReembedParams, ReselectParams: flows' and CLI's parameters
_frames.py    which samples, and their frames read back from the source by key and frame index
_models.py    trained models in the pool's storage: per-epoch checkpoints, weights, model cards
_simclr.py    SimCLR training (lightly's NT-Xent loss, SimCLR views and projection head)
_reembed.py   re-embed every sample with another model: plan, shards, one switching commit
_reselect.py  a new selection from the samples already in the pool, without decoding
```
Torch and lightly are imported inside the functions that need them, so importing this package
stays cheap.
"""

from winnow.training._frames import choose_samples, read_frames
from winnow.training._models import (
    ModelCard,
    checkpoint_key,
    list_models,
    model_id_for,
    read_card,
)
from winnow.training._params import (
    Names,
    PoolOutput,
    PoolSource,
    ReembedParams,
    ReselectParams,
    TrainOptions,
    TrainParams,
    recorded_source,
)
from winnow.training._reembed import (
    ReembedPlan,
    commit_reembed,
    embed_reembed_shards,
    plan_reembed,
)
from winnow.training._reselect import pool_file_results, reselect_candidates
from winnow.training._simclr import EpochReport, TrainResult, model_id, train_model

__all__ = [
    "EpochReport",
    "ModelCard",
    "Names",
    "PoolOutput",
    "PoolSource",
    "ReembedParams",
    "ReembedPlan",
    "ReselectParams",
    "TrainOptions",
    "TrainParams",
    "TrainResult",
    "checkpoint_key",
    "choose_samples",
    "commit_reembed",
    "embed_reembed_shards",
    "list_models",
    "model_id",
    "model_id_for",
    "plan_reembed",
    "pool_file_results",
    "read_card",
    "read_frames",
    "recorded_source",
    "reselect_candidates",
    "train_model",
]
