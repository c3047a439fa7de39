"""Objects in the exports and the report (outputs._objects): Label Studio, COCO, CSV, cards."""

from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODEL, make_run
from winnow import outputs
from winnow.datapool import Datapool
from winnow.records import ObjectRows, TagRecord
from winnow.storage import LocalStore
from winnow.summary import RunSummary

NAN = float("nan")
HOSTILE_KEY = 'cam "1",\nnight.mp4'


def _object(oid: str, sid: str, box, label: str, score: float = NAN, key: str = "a.mp4") -> dict:
    x, y, w, h = box
    return {
        "object_id": oid,
        "sample_id": sid,
        "key": key,
        "fingerprint": f"fp-{key}",
        "label": label,
        "frame_index": 7,
        "pts_seconds": 0.25,
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "score": score,
        "probabilities": [],
    }


def _frame(sid: str, filename: str, width: int = 200, height: int = 100) -> dict:
    return {
        "sample_id": sid,
        "filename": filename,
        "key": "a.mp4",
        "frame_index": 7,
        "width": width,
        "height": height,
    }


# -- Label Studio ------------------------------------------------------------------------------


def test_labelstudio_regions_are_the_boxes_in_percent_of_the_frame():
    objects = ObjectRows.from_rows(
        [
            _object("aaaaaaaaaaXX", "s1", (50, 10, 100, 40), "car", 0.9),
            _object("bbbbbbbbbbYY", "s1", (0, 75, 20, 25), "person", 0.5),
            _object("ccccccccccZZ", "s1", (190, 0, 10, 100), "person"),
        ]
    )
    (prediction,) = outputs.labelstudio_predictions(objects, width=200, height=100)
    assert prediction["model_version"] == "winnow"
    assert prediction["score"] == pytest.approx(0.7)  # the unknown score is left out
    regions = prediction["result"]
    assert [r["id"] for r in regions] == ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"]
    assert [r["value"]["rectanglelabels"] for r in regions] == [["car"], ["person"], ["person"]]
    boxes = [[r["value"][k] for k in ("x", "y", "width", "height")] for r in regions]
    np.testing.assert_allclose(
        boxes, [[25, 10, 50, 40], [0, 75, 10, 25], [95, 0, 5, 100]], atol=1e-9
    )
    for r in regions:
        assert (r["type"], r["from_name"], r["to_name"]) == ("rectanglelabels", "label", "image")
        assert (r["original_width"], r["original_height"], r["image_rotation"]) == (200, 100, 0)
        assert r["value"]["rotation"] == 0
    assert regions[0]["score"] == pytest.approx(0.9) and "score" not in regions[2]
    json.dumps(prediction, allow_nan=False)  # valid JSON: no NaN anywhere


def test_labelstudio_predictions_without_scores_or_objects():
    objects = ObjectRows.from_rows([_object("o1", "s1", (1, 2, 3, 4), "car")])
    (prediction,) = outputs.labelstudio_predictions(objects, width=10, height=10, model_version="m")
    assert "score" not in prediction and prediction["model_version"] == "m"
    assert outputs.labelstudio_predictions(ObjectRows.empty(), width=10, height=10) == []


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 10)])
def test_labelstudio_predictions_need_the_frames_size(width, height):
    objects = ObjectRows.from_rows([_object("o1", "s1", (1, 2, 3, 4), "car")])
    with pytest.raises(ValueError, match="positive size"):
        outputs.labelstudio_predictions(objects, width=width, height=height)


def test_labels_config_escapes_each_label_and_names_the_regions_tags():
    labels = ["car", 'a "b" <c> & d', "car"]
    config = outputs.labelstudio_labels_config(labels)
    root = ET.fromstring(config)
    assert root.find("Image").attrib == {"name": "image", "value": "$image"}
    rect = root.find("RectangleLabels")
    assert rect.attrib == {"name": "label", "toName": "image"}
    assert [e.attrib["value"] for e in rect.findall("Label")] == ["car", 'a "b" <c> & d']


@pytest.mark.parametrize(
    ("labels", "match"), [([], "at least one label"), (["bell\x07"], "control character")]
)
def test_labels_config_refuses_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        outputs.labelstudio_labels_config(labels)


# -- COCO --------------------------------------------------------------------------------------


def _coco_case() -> tuple[list[dict], ObjectRows]:
    frames = [_frame("s2", "frames/a-2-mp4.png"), _frame("s1", "stills/b.jpg", 64, 48)]
    objects = ObjectRows.from_rows(
        [
            _object("o3", "s1", (1.5, 2.25, 10, 20), "person", 0.25),
            _object("o1", "s2", (50, 10, 100, 40), "car", 0.9),
            _object("o9", "elsewhere", (0, 0, 5, 5), "bus", 0.5),  # not a picked frame
            _object("o2", "s2", (0, 75, 20, 25), "person"),
        ]
    )
    return frames, objects


def test_coco_holds_the_frames_and_their_boxes_with_consistent_ids():
    frames, objects = _coco_case()
    coco = json.loads(outputs.coco_json(frames, objects))
    images = {i["id"]: i for i in coco["images"]}
    assert [i["file_name"] for i in coco["images"]] == ["frames/a-2-mp4.png", "stills/b.jpg"]
    assert [i["winnow_sample_id"] for i in coco["images"]] == ["s2", "s1"]
    assert (images[2]["width"], images[2]["height"], images[2]["frame_index"]) == (64, 48, 7)
    assert coco["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    anns = coco["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert [a["winnow_object_id"] for a in anns] == ["o1", "o2", "o3"]  # by image, then id
    assert all(a["image_id"] in images and a["category_id"] in names for a in anns)
    by_id = {a["winnow_object_id"]: a for a in anns}
    assert by_id["o3"]["bbox"] == [1.5, 2.25, 10.0, 20.0] and by_id["o3"]["area"] == 200.0
    assert images[by_id["o3"]["image_id"]]["winnow_sample_id"] == "s1"
    assert names[by_id["o1"]["category_id"]] == "car" and by_id["o1"]["iscrowd"] == 0
    assert by_id["o1"]["score"] == pytest.approx(0.9) and "score" not in by_id["o2"]
    for a in anns:
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])


def test_coco_is_deterministic_and_ignores_the_objects_order():
    frames, objects = _coco_case()
    once = outputs.coco_json(frames, objects)
    assert once == outputs.coco_json(frames, objects.take([3, 2, 1, 0]))
    json.loads(once.decode(), parse_constant=pytest.fail)  # no NaN written
    empty = json.loads(outputs.coco_json(frames, ObjectRows.empty()))
    assert empty["annotations"] == [] and empty["categories"] == [] and len(empty["images"]) == 2


# -- objects.csv -------------------------------------------------------------------------------


def test_objects_csv_reads_back_with_a_hostile_key():
    objects = ObjectRows.from_rows(
        [
            _object("o1", "s1", (1.5, 2, 3, 4), "car", 0.75, key=HOSTILE_KEY),
            _object("o2", "s1", (5, 6, 7, 8), 'pe"rs,on', key=HOSTILE_KEY),
        ]
    )
    data = outputs.objects_csv(objects, picked={"o2": "farthest, from 'all'"})
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    assert tuple(rows[0]) == outputs.OBJECTS_CSV_COLUMNS
    assert [r["key"] for r in rows] == [HOSTILE_KEY, HOSTILE_KEY]
    assert [r["label"] for r in rows] == ["car", 'pe"rs,on']
    assert [(r["picked"], r["reason"]) for r in rows] == [("0", ""), ("1", "farthest, from 'all'")]
    assert [float(rows[0][c]) for c in ("x", "y", "w", "h")] == [1.5, 2, 3, 4]
    assert float(rows[0]["score"]) == 0.75 and rows[1]["score"] == ""
    assert rows[0]["frame_index"] == "7" and rows[0]["sample_id"] == "s1"


# -- cards -------------------------------------------------------------------------------------


def _card(frame: np.ndarray, box, size: int = 160) -> Image.Image:
    png = outputs.object_card_png(frame, box, label="car", score=0.5, size=size)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def test_card_shows_the_frame_with_the_box_and_the_crop_beside_it():
    frame = np.full((100, 200, 3), 90, np.uint8)
    frame[20:60, 50:110] = (0, 200, 0)  # the object: green
    card = np.asarray(_card(frame, (50, 20, 60, 40)))
    # left: the frame 160 high (scale 1.6, 320 wide); right: the 60x40 crop at 240x160
    assert card.shape == (160, 320 + 4 + 240, 3)
    colour = np.array(outputs.BOX_COLOUR)
    for y, x in [(32, 120), (33, 120), (60, 80), (60, 81), (95, 120), (60, 175)]:
        assert (card[y, x] == colour).all(), (y, x, card[y, x])
    assert (card[60, 120] == (0, 200, 0)).all()  # inside the box: the object, not drawn over
    crop = card[:, 324:]
    assert np.abs(crop[10:150, 10:230].astype(int) - (0, 200, 0)).max() <= 2


@pytest.mark.parametrize(
    "box",
    [
        (-30, -20, 60, 50),  # partly outside
        (150, 80, 500, 500),
        (10.2, 10.7, 0.3, 0.1),  # under a pixel
        (400, 400, 5, 5),  # wholly outside
        (0, 50, 200, 0.5),  # a thin line across the frame
        (NAN, 0, 5, 5),
    ],
)
def test_card_survives_boxes_outside_the_frame_and_tiny_boxes(box):
    frame = np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    card = _card(frame, box, size=64)
    assert card.height == 64 and card.width <= 4 * 64 * 2 + 4
    assert (np.asarray(card) == outputs.BOX_COLOUR).all(axis=2).any()


@pytest.mark.parametrize(
    ("frame", "size", "match"),
    [(np.zeros((10, 10), np.uint8), 160, "H, W, 3"), (np.zeros((10, 10, 3), np.uint8), 8, "16")],
)
def test_card_refuses_bad_frames_and_sizes(frame, size, match):
    with pytest.raises(ValueError, match=match):
        outputs.object_card_png(frame, (1, 1, 2, 2), label="x", score=NAN, size=size)


# -- the report --------------------------------------------------------------------------------


def test_report_shows_each_picked_object_escaped():
    frame = np.full((48, 64, 3), 120, np.uint8)
    card = outputs.object_card_png(frame, (4, 4, 20, 10), label="car", score=0.9)
    objects = [
        {
            "object_id": 'o1"><script>',
            "key": "<img src=x onerror=alert(1)>.mp4",
            "frame_index": 12,
            "label": "<b>car</b>",
            "score": 0.875,
            "box": (4.0, 4.0, 20.0, 10.0),
            "reason": "farthest & <i>first</i>",
            "card_png": card,
        },
        {
            "object_id": "o2",
            "key": "b.jpg",
            "frame_index": 0,
            "label": "person",
            "score": NAN,
            "box": (1, 2, 3, 4),
            "reason": "r",
            "card_png": None,
        },
    ]
    summary = RunSummary(run_id="r", source="s", output="o", tag="t1")
    report = outputs.render_report(summary=summary, picks=[], plot_png=None, objects=objects)
    section = report[report.index("<h2>Objects</h2>") :]
    assert "<script>" not in report and "<img src=x" not in report and "<b>car" not in report
    assert "&lt;b&gt;car&lt;/b&gt;" in section and "farthest &amp; &lt;i&gt;first" in section
    assert section.count("data:image/png;base64,") == 1 and "no preview" in section
    assert "score 0.88" in section and "frame 12" in section and "box 4, 4, 20×10 px" in section
    assert "score nan" not in section.lower()
    for empty in (None, []):
        plain = outputs.render_report(summary=summary, picks=[], plot_png=None, objects=empty)
        assert "<h2>Objects</h2>" not in plain


# -- exported from the datapool ----------------------------------------------------------------


@pytest.fixture
def pool_with_objects(tmp_path):
    """A pool whose tag holds frames 2 and 0 of a 4-frame video; objects on frames 2 and 1."""
    output = LocalStore(tmp_path / "out")
    pool = Datapool(output.child("pool"))
    files, samples = make_run(["cam1/a.mp4"], frames=4, seed=1)
    sid = [str(s) for s in samples.sample_id]
    objects = ObjectRows.from_rows(
        [
            _object("o-car", sid[2], (8, 4, 32, 24), "car", 0.8, key="cam1/a.mp4"),
            _object("o-person", sid[2], (0, 0, 16, 48), "person", key="cam1/a.mp4"),
            _object("o-other", sid[1], (1, 1, 2, 2), "dog", 0.3, key="cam1/a.mp4"),
        ]
    )
    objects = objects.with_embedding(np.zeros((3, MODEL.dim), np.float16))
    tag = TagRecord(
        name="t1",
        parent=None,
        run_id="r1",
        created="2026-01-01T00:00:00+00:00",
        parameters="{}",
        counts="{}",
        sample_ids=(sid[2], sid[0]),
    )
    pool.commit(
        pool.load(),
        run_id="r1",
        files=files,
        samples=samples,
        tag=tag,
        model=MODEL,
        objects=objects,
    )
    return output, pool.load(), sid


def test_coco_export_of_a_tag_holds_its_members_boxes_only(pool_with_objects):
    _, snapshot, sid = pool_with_objects
    coco = json.loads(outputs.export_tag(snapshot, tag="t1", fmt="coco"))
    assert [i["winnow_sample_id"] for i in coco["images"]] == [sid[2], sid[0]]
    names = [i["file_name"] for i in coco["images"]]
    assert names == ["frames/cam1/a-2-mp4.png", "frames/cam1/a-0-mp4.png"]
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(64, 48), (64, 48)]
    assert [a["winnow_object_id"] for a in coco["annotations"]] == ["o-car", "o-person"]
    assert {c["name"] for c in coco["categories"]} == {"car", "person"}
    assert coco["annotations"][0]["bbox"] == [8, 4, 32, 24]


def test_labelstudio_export_of_a_tag_carries_its_boxes_as_predictions(pool_with_objects):
    output, snapshot, sid = pool_with_objects
    tasks = json.loads(outputs.export_tag(snapshot, tag="t1", fmt="labelstudio", output=output))
    with_boxes, without = tasks
    assert with_boxes["meta"]["sample_id"] == sid[2] and "predictions" not in without
    (prediction,) = with_boxes["predictions"]
    values = {r["value"]["rectanglelabels"][0]: r["value"] for r in prediction["result"]}
    assert set(values) == {"car", "person"}
    got = [values["car"][k] for k in ("x", "y", "width", "height")]
    assert got == pytest.approx([100 * 8 / 64, 100 * 4 / 48, 100 * 32 / 64, 100 * 24 / 48])
    assert values["person"]["height"] == pytest.approx(100.0)
    assert prediction["score"] == pytest.approx(0.8) and not math.isnan(prediction["score"])
