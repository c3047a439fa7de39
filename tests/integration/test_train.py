"""The train-embedding flow: a model trained on the pool's own frames, stored in the pool, loaded
by later runs; a training killed with SIGKILL between epochs resumes at the next epoch.

The killed training is a real `winnow train` in a child process with one probe around the real
code: every epoch checkpoint it stores leaves a marker, and after epoch 1's it holds (sleeps)
until the test kills it, so the kill lands between epoch 1 and epoch 2 and the test checks it did.
"""

from __future__ import annotations

import hashlib
import io
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import kill_at_marker, run
from winnow import demo
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

TRAIN = {"epochs": 2, "batch_size": 8, "input_size": 32, "device": "cpu", "seed": 1}
DEMO = {"frames_per_video": 20, "width": 96, "height": 64}


@pytest.fixture
def curated(tmp_path) -> tuple[Path, Path]:
    """A source of 2 short videos and 4 stills, curated once (resnet18, random weights)."""
    source, output = tmp_path / "raw", tmp_path / "out"
    demo.write_demo_files(LocalStore(source), n_videos=2, n_images=4, **DEMO)
    run(str(source), str(output), selection={"n_samples": 4})
    return source, output


def _artifacts(flow_run_id) -> dict[str, list]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found: dict[str, list] = {}
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        for artifact in client.read_artifacts(artifact_filter=flt):
            found.setdefault(artifact.type, []).append(artifact)
    return found


def test_a_trained_model_is_stored_in_the_pool_and_a_later_curate_run_loads_it(curated):
    from flows.reembed import reembed
    from flows.train import train
    from winnow.embedding import EmbeddingOptions
    from winnow.training import TrainOptions

    source, output = curated
    state = train(output=str(output), training=TrainOptions(**TRAIN), return_state=True)
    result = state.result()
    pool = Datapool(LocalStore(output / "pool"))
    model_pt = output / "pool" / "models" / result["model_id"] / "model.pt"
    card = output / "pool" / "models" / result["model_id"] / "model.json"
    assert model_pt.is_file() and card.is_file()
    assert result["weights"] == f"pool:{result['model_id']}" and result["url"] == str(model_pt)
    assert result["epochs"] == 2 and len(result["losses"]) == 2 and result["resumed_from"] == 0
    assert result["data_version"] == 1 and result["samples"] == len(pool.load().samples())
    # Loss per epoch in the UI: a progress artifact that reached 100 %, and a markdown table.
    artifacts = _artifacts(state.state_details.flow_run_id)
    (progress,) = artifacts["progress"]
    assert progress.data == 100 and "2/2 epochs" in progress.description
    (summary,) = artifacts["markdown"]
    assert f"pool:{result['model_id']}" in summary.data
    for loss in result["losses"]:
        assert f"| {loss:.4f} |" in summary.data

    # The pool moves to the trained model; a later curate run names it and loads it.
    new = EmbeddingOptions(weights=result["weights"], input_size=32, batch_size=16)
    switched = reembed(output=str(output), embedding=new)
    assert switched["version_after"] == 2 and switched["samples"] == result["samples"]
    demo.write_demo_files(LocalStore(source), n_videos=1, n_images=1, first=6, **DEMO)
    summary = run(
        str(source), str(output), embedding={"weights": result["weights"], "input_size": 32}
    )
    after = pool.load()
    digest = hashlib.sha256(model_pt.read_bytes()).hexdigest()[:16]
    assert after.model.weights == f"checkpoint:{digest}" and after.model.input_size == 32
    assert summary["pool_version_after"] == 3 and summary["files_new"] == 2
    assert [t.name for t in after.tags] == ["run-0001", "run-0002"]


_PROBED_TRAIN = r"""
import sys, time
from pathlib import Path

markers = Path(sys.argv[1])
markers.mkdir(parents=True, exist_ok=True)

from winnow.training import _simclr

real_save = _simclr.save_state
def save_state(store, key, state):
    data = real_save(store, key, state)
    if key.endswith("checkpoint.pt"):
        (markers / f"checkpoint-{state['epoch']}").write_text(str(time.time()))
        if state["epoch"] == 1:
            (markers / "kill-point").write_text("")
            time.sleep(600)  # the test kills this process here, between epoch 1 and 2
    return data
_simclr.save_state = save_state

sys.argv = ["winnow", *sys.argv[2:]]
from flows.cli import main
main()
"""


def test_a_training_killed_between_epochs_resumes_at_the_next_epoch(curated, tmp_path):
    import torch

    from flows.train import train
    from winnow.training import TrainOptions, checkpoint_key, model_id, read_card

    source, output = curated
    options = TrainOptions(**{**TRAIN, "epochs": 3})
    markers = tmp_path / "markers"
    args = ["train", "--output", str(output), "--epochs", "3", "--batch-size", "8"]
    args += ["--input-size", "32", "--device", "cpu", "--seed", "1", "--json"]
    returncode = kill_at_marker(_PROBED_TRAIN, markers, args, what="training")
    assert returncode == -signal.SIGKILL

    # The kill landed after epoch 1's checkpoint and before the end.
    store = LocalStore(output / "pool")
    mid = model_id(options)
    state = torch.load(io.BytesIO(store.get(checkpoint_key(mid))), weights_only=True)
    assert state["epoch"] == 1 and len(state["losses"]) == 1
    assert (markers / "checkpoint-1").exists() and not (markers / "checkpoint-2").exists()
    assert read_card(store, mid) is None  # not finished

    saved: list[int] = []
    import winnow.training._simclr as simclr

    real_save = simclr.save_state

    def recording_save(store_, key, value):
        if key.endswith("checkpoint.pt"):
            saved.append(value["epoch"])
        return real_save(store_, key, value)

    simclr.save_state = recording_save
    try:
        result = train(output=str(output), training=options)
    finally:
        simclr.save_state = real_save
    assert result["model_id"] == mid and result["resumed_from"] == 1
    assert saved == [2, 3]  # the resumed run started at epoch 2
    assert result["epochs"] == 3 and result["losses"][0] == pytest.approx(state["losses"][0])
    assert read_card(store, mid) is not None and not store.exists(checkpoint_key(mid))


def test_lifecycle_flow_signatures_and_parameter_models_agree():
    import inspect

    from flows.reembed import reembed
    from flows.reselect import reselect
    from flows.train import train
    from winnow.training import ReembedParams, ReselectParams, TrainParams

    for flow_, model in (
        (train, TrainParams),
        (reembed, ReembedParams),
        (reselect, ReselectParams),
    ):
        signature = inspect.signature(flow_.fn)
        assert list(signature.parameters) == list(model.model_fields), flow_.name
        docs = inspect.getdoc(flow_.fn)
        for name, param in signature.parameters.items():
            field = model.model_fields[name]
            if not field.is_required():
                assert param.default == field.get_default(call_default_factory=True), name
            assert f"    {name}: " in docs, (flow_.name, name)  # the UI form's description
