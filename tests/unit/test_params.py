"""CurateParams: bad values are rejected with clear messages before any work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from winnow.params import CurateParams


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"selection": {"n_samples": -1}}, "greater than or equal to 1"),
        ({"selection": {"proportion": 1.5}}, "less than or equal to 1"),
        ({"selection": {"proportion": 0}}, "greater than 0"),
        ({"selection": {"strategies": [{"type": "magic"}]}}, "magic"),
        (
            {
                "selection": {
                    "strategies": [
                        {"type": "threshold", "column": "brightness", "min": 0.9, "max": 0.1}
                    ]
                }
            },
            "swap them",
        ),
        ({"frames": {"every_n_frames": 2, "sample_fps": 1.0}}, "at most one"),
        ({"frames": {"every_n_frames": 0}}, "greater than or equal to 1"),
        ({"embedding": {"model": "alexnet"}}, "resnet18"),
        ({"embedding": {"batch_size": 0}}, "greater than or equal to 1"),
        ({"tag_name": "../escape"}, "pattern"),
        ({"output": "/data/raw"}, "output must differ from source"),
        ({"source": "gs://bucket/raw"}, "use a local path"),
        ({"source": "s3:///raw"}, "names no bucket"),
        ({"shard_files": 0}, "greater than or equal to 1"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_are_rejected(overrides, match):
    with pytest.raises(ValidationError, match=match):
        CurateParams.model_validate({"source": "/data/raw", **overrides})


def test_defaults_and_output_beside_the_source():
    params = CurateParams(source="s3://bucket/raw")
    assert params.output_url == "s3://bucket/.winnow"
    assert params.embedding.weights == "default" and params.selection.n_samples == 50
    assert CurateParams(source="/data/raw").output_url == "/data/.winnow"


def test_every_parameter_is_described():
    schema = CurateParams.model_json_schema()
    undocumented = [
        name
        for name, prop in schema["properties"].items()
        if "description" not in prop and "$ref" not in prop and "allOf" not in prop
    ]
    assert undocumented == []


def test_text_queries_need_a_model_with_a_text_tower_before_any_work():
    texts = {"strategies": [{"type": "similarity", "texts": ["a cyclist at night"]}]}
    with pytest.raises(ValidationError, match="'resnet18' has no text tower"):
        CurateParams(source="/data/raw", selection=texts)
    with pytest.raises(ValidationError, match="has no text tower"):
        CurateParams(
            source="/data/raw",
            embedding={"model": "timm:vit_small_patch14_dinov2.lvd142m"},
            selection=texts,
        )
    clip = CurateParams(
        source="/data/raw",
        embedding={"model": "open_clip:ViT-B-32/laion2b_s34b_b79k"},
        selection=texts,
    )
    assert clip.selection.needs().texts == ("a cyclist at night",)


@pytest.mark.parametrize(
    ("check", "match"),
    [
        ({"against": []}, "at least 1 item"),
        ({"against": ["test"], "distance": 3}, "less than or equal to 2"),
        ({"against": ["no/slash"]}, "should match pattern"),
        ({"against": ["test"], "fail": "maybe"}, "valid boolean"),
    ],
)
def test_a_bad_leak_check_is_rejected_before_any_work(check, match):
    with pytest.raises(ValidationError, match=match):
        CurateParams(source="/data/raw", leak_check=check)
    assert (
        CurateParams(source="/data/raw", leak_check={"against": ["test"]}).leak_check.distance
        == 0.05
    )
