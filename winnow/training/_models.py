"""Trained models in the pool's storage: per-epoch checkpoints, final weights, model cards.

    <pool>/models/<model-id>/checkpoint.pt   training state after the last finished epoch
    <pool>/models/<model-id>/model.pt        the trunk's state_dict (torchvision key names)
    <pool>/models/<model-id>/model.json      the model card: method, backbone, data, loss

`model.pt` is what `embedding.weights` loads (`pool:<model-id>`, its URL, or a local copy);
`model.json` is written last, so a model with a card is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from winnow.embedding import pool_model_key
from winnow.errors import NotFound, PoolCorrupt
from winnow.storage import ObjectStore

MODELS_PREFIX = "models"


def checkpoint_key(model_id: str) -> str:
    """Key of a training's last epoch checkpoint, in the pool's store."""
    return f"{MODELS_PREFIX}/{model_id}/checkpoint.pt"


def card_key(model_id: str) -> str:
    """Key of a trained model's card, in the pool's store."""
    return f"{MODELS_PREFIX}/{model_id}/model.json"


def model_id_for(method: str, backbone: str, identity: dict) -> str:
    """A stable id for a training: the same parameters name (and resume) the same model."""
    text = json.dumps(identity, sort_keys=True)
    return f"{method}-{backbone}-{hashlib.blake2b(text.encode(), digest_size=5).hexdigest()}"


@dataclass(frozen=True)
class ModelCard:
    """What the pool records about a trained model (`model.json`).

    Attributes:
        model_id: Its name in the pool.
        method: Training method (`simclr`).
        backbone: torchvision model name (`embedding.model`).
        input_size: Square size it was trained at (use it as `embedding.input_size`).
        dim: Width of its embeddings.
        epochs: Epochs trained.
        final_loss: Mean loss of the last epoch.
        losses: Mean loss of every epoch.
        data_version: Pool version whose samples it was trained on.
        samples: Samples trained on.
        sha256: SHA-256 of `model.pt`.
        weights: How runs name it: `pool:<model-id>`.
        url: Where `model.pt` lives.
        created: When training finished (UTC, ISO 8601).
        seconds: Wall-clock seconds of training (all attempts).
        parameters: The training parameters (JSON-ready).
    """

    model_id: str
    method: str
    backbone: str
    input_size: int
    dim: int
    epochs: int
    final_loss: float
    losses: list[float]
    data_version: int
    samples: int
    sha256: str
    weights: str
    url: str
    created: str
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The card as UTF-8 JSON."""
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()


def read_card(store: ObjectStore, model_id: str) -> ModelCard | None:
    """The card of a finished model, or None when there is none (not trained, or unfinished).

    Raises:
        PoolCorrupt: If the card exists but is not readable.
    """
    try:
        data = store.get(card_key(model_id))
    except NotFound:
        return None
    try:
        return ModelCard(**json.loads(data))
    except (ValueError, TypeError) as exc:
        raise PoolCorrupt(f"model card {store.url_for(card_key(model_id))}: {exc}") from exc


def list_models(store: ObjectStore) -> list[ModelCard]:
    """Cards of every finished model in a pool's store, oldest first."""
    cards = []
    try:
        infos = list(store.list(MODELS_PREFIX))
    except NotFound:
        return []
    for info in infos:
        if info.key.endswith("/model.json"):
            card = read_card(store, info.key.split("/")[1])
            if card is not None:
                cards.append(card)
    return sorted(cards, key=lambda c: c.created)


def save_state(store: ObjectStore, key: str, state: dict[str, Any]) -> bytes:
    """`torch.save` an object into the store (one atomic put); return the bytes written."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    store.put(key, data)
    return data


def load_checkpoint(store: ObjectStore, model_id: str) -> dict[str, Any] | None:
    """A training's last checkpoint, or None when there is none (or it cannot be read)."""
    import torch

    try:
        data = store.get(checkpoint_key(model_id))
    except NotFound:
        return None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # torn or foreign object: start afresh rather than fail the run
        return None


def save_model(
    store: ObjectStore, model_id: str, trunk_state: dict[str, Any], card: dict[str, Any]
) -> ModelCard:
    """Write the final weights, then the card (which marks the model complete)."""
    data = save_state(store, pool_model_key(model_id), trunk_state)
    final = ModelCard(
        **card,
        model_id=model_id,
        sha256=hashlib.sha256(data).hexdigest(),
        weights=f"pool:{model_id}",
        url=store.url_for(pool_model_key(model_id)),
    )
    store.put(card_key(model_id), final.to_json())
    return final
