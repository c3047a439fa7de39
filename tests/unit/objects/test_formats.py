"""Predictions files (table, COCO, YOLO) parsed into boxes, with bad rows counted."""

from __future__ import annotations

import io
import json
import math
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.errors import ConfigError
from winnow.objects import _formats
from winnow.objects._boxes import (
    BAD_CLASS,
    BAD_FILENAME,
    BAD_FRAME,
    BAD_NUMBER,
    BAD_PROBABILITIES,
    BAD_SIZE,
    Box,
)

CSV = b"""filename,frame_index,x,y,w,h,label,score
./cam/a.mp4,0,10,20,30,40,car,0.9
cam\\a.mp4,0,1,2,3,4,person,0.5
/cam/a.mp4,7,5,6,7,8,car,
img.jpg,0,1.5,2.5,3.5,4.5,person,0.25
"""


def _parquet(columns: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def _jsonl(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def _parse_csv(text: str, **kwargs):
    return _formats.parse_predictions(text.encode(), name="preds.csv", **kwargs)


def _box(x, y, w, h, label, *, frame=0, pts=None, normalised=False, score=math.nan, probs=()):
    x, y, w, h = (float(v) for v in (x, y, w, h))
    return Box(frame, pts, x, y, w, h, normalised, label, score, probs)


def _reprs(boxes) -> list[str]:
    """Boxes as text, so NaN scores compare equal."""
    return [repr(b) for b in boxes]


# -- predictions_format ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("p.csv", "auto", "table"),
        ("s3://b/p.PARQUET?versionId=3", "auto", "table"),
        ("p.pq", "auto", "table"),
        ("p.jsonl", "auto", "table"),
        ("p.ndjson", "auto", "table"),
        ("coco/instances.json", "auto", "coco"),
        ("labels/a.txt", "auto", "yolo"),
        ("p.json", "table", "table"),
        ("labels/", "yolo", "yolo"),
    ],
)
def test_predictions_format_follows_the_extension_unless_named(name, fmt, expected):
    assert _formats.predictions_format(name, fmt) == expected


@pytest.mark.parametrize(
    ("name", "fmt", "match"),
    [
        ("preds.xlsx", "auto", r"'preds\.xlsx'.*\.csv, \.parquet, \.pq, \.jsonl, \.ndjson, \.json"),
        ("preds", "auto", r"'preds'.*extension"),
        ("preds.csv", "excel", r"'preds\.csv'.*unknown format 'excel'"),
    ],
)
def test_predictions_format_rejects_unknown_names_and_formats(name, fmt, match):
    with pytest.raises(ConfigError, match=match):
        _formats.predictions_format(name, fmt)


# -- table: CSV, Parquet, JSON lines --------------------------------------------------------


def test_csv_boxes_are_grouped_by_normalised_key_in_row_order():
    out = _formats.parse_predictions(CSV, name="preds.csv")
    assert out.rows == 4 and out.bad == {} and out.n_boxes == 4
    assert list(out.boxes) == ["cam/a.mp4", "img.jpg"]
    a = out.boxes["cam/a.mp4"]
    assert _reprs(a) == _reprs(
        [
            _box(10, 20, 30, 40, "car", score=0.9),
            _box(1, 2, 3, 4, "person", score=0.5),
            _box(5, 6, 7, 8, "car", frame=7),
        ]
    )
    assert math.isnan(a[2].score)  # an empty score is "none", not a bad row
    assert out.boxes["img.jpg"] == (_box(1.5, 2.5, 3.5, 4.5, "person", score=0.25),)
    assert out.classes == ("car", "person")


def test_the_same_table_as_csv_parquet_and_json_lines_gives_the_same_boxes():
    columns = {
        "filename": ["a.jpg", "a.jpg", "b.jpg"],
        "x": [0.1, 0.2, 0.3],
        "y": [0.1, 0.2, 0.3],
        "w": [0.5, 0.25, 0.125],
        "h": [0.5, 0.25, 0.125],
        "label": ["cat", "dog", "cat"],
        "score": [0.9, 0.8, 0.7],
    }
    csv = "\n".join(
        [",".join(columns)] + [",".join(str(v[i]) for v in columns.values()) for i in range(3)]
    ).encode()
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    sets = [
        _formats.parse_predictions(csv, name="p.csv", box_units="normalised"),
        _formats.parse_predictions(_parquet(columns), name="p.parquet", box_units="normalised"),
        _formats.parse_predictions(_jsonl(rows), name="p.jsonl", box_units="normalised"),
    ]
    for out in sets:
        assert out.rows == 3 and out.bad == {}
        assert out.boxes == sets[0].boxes
        assert out.classes == ("cat", "dog")
    assert sets[0].boxes["a.jpg"][1] == _box(
        0.2, 0.2, 0.25, 0.25, "dog", score=0.8, normalised=True
    )


def test_a_table_without_frame_columns_is_images_on_frame_zero():
    out = _parse_csv("filename,x,y,w,h,label\n001.jpg,1,2,3,4,car\n")
    assert out.boxes == {"001.jpg": (_box(1, 2, 3, 4, "car"),)}  # `001` stays text


def test_json_lines_name_frames_by_time_and_by_index():
    rows = [
        {"filename": "v.mp4", "pts_seconds": 1.5, "x": 1, "y": 1, "w": 2, "h": 2, "label": "a"},
        {"filename": "v.mp4", "frame_index": 3, "x": 1, "y": 1, "w": 2, "h": 2, "label": "a"},
        {
            "filename": "v.mp4",
            "frame_index": 4,
            "pts_seconds": 0.16,
            "x": 1,
            "y": 1,
            "w": 2,
            "h": 2,
            "label": "a",
        },
    ]
    out = _formats.parse_predictions(_jsonl(rows), name="p.ndjson")
    assert [(b.frame_index, b.pts_seconds) for b in out.boxes["v.mp4"]] == [
        (None, 1.5),
        (3, None),
        (4, 0.16),
    ]


def test_corners_are_converted_to_top_left_and_size():
    out = _parse_csv("filename,x1,y1,x2,y2,label\na.jpg,10,20,40,60,car\n")
    assert out.boxes["a.jpg"] == (_box(10, 20, 30, 40, "car"),)


def test_many_rows_per_frame_are_all_kept():
    lines = ["filename,frame_index,x,y,w,h,label"]
    lines += [f"v.mp4,{i // 50},{i},0,1,1,car" for i in range(200)]
    out = _parse_csv("\n".join(lines))
    boxes = out.boxes["v.mp4"]
    assert out.rows == 200 and len(boxes) == 200 and out.bad == {}
    assert [b.x for b in boxes] == list(range(200))
    assert [b.frame_index for b in boxes] == [i // 50 for i in range(200)]


def test_integer_labels_index_the_classes_and_name_them_without():
    text = "filename,x,y,w,h,label\na.jpg,0,0,1,1,1\na.jpg,0,0,1,1,0\na.jpg,0,0,1,1,10\n"
    named = _parse_csv(text, classes=["car", "person"])
    assert [b.label for b in named.boxes["a.jpg"]] == ["person", "car"]
    assert named.bad == {BAD_CLASS: 1} and named.classes == ("car", "person")
    bare = _parse_csv(text)
    assert [b.label for b in bare.boxes["a.jpg"]] == ["1", "0", "10"]
    assert bare.classes == ("0", "1", "10")


def test_a_table_without_labels_or_probabilities_gets_one_label():
    text = "filename,x,y,w,h\na.jpg,0,0,1,1\n"
    assert _parse_csv(text).boxes["a.jpg"][0].label == _formats.DEFAULT_LABEL
    assert _parse_csv(text, classes=["face"]).boxes["a.jpg"][0].label == "face"
    with pytest.raises(ConfigError, match=r"'preds\.csv' has no 'label' column"):
        _parse_csv(text, classes=["face", "hand"])


# -- probabilities --------------------------------------------------------------------------

PROBS = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]
CLASSES = ["car", "person", "bike"]


def test_prob_columns_and_a_list_column_give_identical_boxes():
    base = {"filename": ["a.jpg"] * 3, "x": [0, 1, 2], "y": [0, 0, 0], "w": [1, 1, 1], "h": [1] * 3}
    per_class = dict(base, **{f"prob_{c}": [p[i] for p in PROBS] for i, c in enumerate(CLASSES)})
    listed = dict(base, probabilities=PROBS)
    a = _formats.parse_predictions(_parquet(per_class), name="p.parquet")
    b = _formats.parse_predictions(_parquet(listed), name="p.parquet", classes=CLASSES)
    assert a.boxes == b.boxes and a.classes == b.classes == tuple(CLASSES)
    assert [x.label for x in a.boxes["a.jpg"]] == ["car", "bike", "person"]  # argmax
    assert a.boxes["a.jpg"][1].probabilities == (0.1, 0.3, 0.6)


def test_prob_columns_follow_the_given_class_order():
    text = "filename,x,y,w,h,prob_b,prob_a\nx.jpg,0,0,1,1,0.9,0.1\n"
    out = _parse_csv(text, classes=["a", "b"])
    assert out.classes == ("a", "b")
    assert out.boxes["x.jpg"][0].probabilities == (0.1, 0.9)
    assert out.boxes["x.jpg"][0].label == "b"


def test_a_probabilities_list_in_a_csv_cell_is_json():
    text = 'filename,x,y,w,h,probabilities\na.jpg,0,0,1,1,"[0.25, 0.75]"\n'
    out = _parse_csv(text, classes=["a", "b"])
    assert out.boxes["a.jpg"][0].probabilities == (0.25, 0.75)


def test_probabilities_near_one_are_renormalised_and_others_rejected():
    text = (
        "filename,x,y,w,h,prob_a,prob_b\n"
        "a.jpg,0,0,1,1,0.5,0.49\n"  # sum 0.99: kept, rescaled
        "a.jpg,0,0,1,1,0.51,0.51\n"  # sum 1.02: kept
        "a.jpg,0,0,1,1,0.5,0.45\n"  # sum 0.95: rejected
    )
    out = _parse_csv(text)
    kept = out.boxes["a.jpg"]
    assert len(kept) == 2 and out.bad == {BAD_PROBABILITIES: 1}
    assert kept[0].probabilities == pytest.approx((0.5 / 0.99, 0.49 / 0.99))
    assert math.fsum(kept[0].probabilities) == pytest.approx(1.0)
    assert kept[1].probabilities == pytest.approx((0.5, 0.5))
    assert out.examples[BAD_PROBABILITIES] == "line 4 (a.jpg): probabilities sum to 0.95"


# -- bad rows -------------------------------------------------------------------------------

HEADER = "filename,frame_index,pts_seconds,x,y,w,h,label,score,prob_car,prob_dog"
GOOD = "good.jpg,0,,1,2,3,4,car,0.5,0.6,0.4"


@pytest.mark.parametrize(
    ("row", "reason", "example"),
    [
        (",0,,1,2,3,4,car,0.5,0.6,0.4", BAD_FILENAME, "line 3: filename=empty"),
        ("./,0,,1,2,3,4,car,0.5,0.6,0.4", BAD_FILENAME, "line 3: filename='./'"),
        ("a.jpg,-1,,1,2,3,4,car,0.5,0.6,0.4", BAD_FRAME, "line 3 (a.jpg): frame_index=-1"),
        ("a.jpg,1.5,,1,2,3,4,car,0.5,0.6,0.4", BAD_FRAME, "line 3 (a.jpg): frame_index=1.5"),
        ("a.jpg,,-0.5,1,2,3,4,car,0.5,0.6,0.4", BAD_FRAME, "line 3 (a.jpg): pts_seconds=-0.5"),
        ("a.jpg,,,1,2,3,4,car,0.5,0.6,0.4", BAD_FRAME, "no frame_index or pts_seconds"),
        ("a.jpg,0,,,2,3,4,car,0.5,0.6,0.4", BAD_NUMBER, "line 3 (a.jpg): x=empty"),
        ("a.jpg,0,,1,inf,3,4,car,0.5,0.6,0.4", BAD_NUMBER, "line 3 (a.jpg): y=inf"),
        ("a.jpg,0,,1,2,three,4,car,0.5,0.6,0.4", BAD_NUMBER, "line 3 (a.jpg): w='three'"),
        ("a.jpg,0,,1,2,3,4,car,1.5,0.6,0.4", BAD_NUMBER, "line 3 (a.jpg): score=1.5"),
        ("a.jpg,0,,1,2,3,4,car,-0.1,0.6,0.4", BAD_NUMBER, "line 3 (a.jpg): score=-0.1"),
        ("a.jpg,0,,1,2,-3,4,car,0.5,0.6,0.4", BAD_SIZE, "line 3 (a.jpg): w=-3"),
        ("a.jpg,0,,1,2,3,0,car,0.5,0.6,0.4", BAD_SIZE, "line 3 (a.jpg): h=0"),
        ("a.jpg,0,,1,2,0,4,car,0.5,0.6,0.4", BAD_SIZE, "line 3 (a.jpg): w=0"),
        ("a.jpg,0,,1,2,3,4,cow,0.5,0.6,0.4", BAD_CLASS, "line 3 (a.jpg): label='cow'"),
        ("a.jpg,0,,1,2,3,4,car,0.5,-0.1,1.1", BAD_PROBABILITIES, "probabilities=[-0.1, 1.1]"),
        ("a.jpg,0,,1,2,3,4,car,0.5,,1", BAD_PROBABILITIES, "probabilities=[empty, 1]"),
        ("a.jpg,0,,1,2,3,4,car,0.5,,", BAD_PROBABILITIES, "line 3 (a.jpg): no probabilities"),
        ("a.jpg,0,,1,2,3,4,car,0.5,0.3,0.3", BAD_PROBABILITIES, "sum to 0.6"),
    ],
)
def test_each_bad_row_is_counted_once_and_good_rows_kept(row, reason, example):
    out = _parse_csv("\n".join([HEADER, GOOD, row, GOOD]) + "\n")
    assert out.rows == 3
    assert out.bad == {reason: 1}
    assert example in out.examples[reason]
    assert out.examples[reason].startswith("line 3")
    assert len(out.boxes["good.jpg"]) == 2
    assert out.boxes["good.jpg"][0] == _box(1, 2, 3, 4, "car", score=0.5, probs=(0.6, 0.4))


def test_corners_the_wrong_way_round_are_a_bad_size():
    out = _parse_csv("filename,x1,y1,x2,y2\na.jpg,10,0,5,5\nb.jpg,0,0,5,5\n")
    assert out.bad == {BAD_SIZE: 1} and out.examples[BAD_SIZE] == "line 2 (a.jpg): w=-5"
    assert list(out.boxes) == ["b.jpg"]


def test_bad_rows_in_parquet_and_json_lines_are_named_by_row():
    columns = {"filename": ["a.jpg", "b.jpg"], "x": [0.0, math.nan], "y": [0.0, 0.0]}
    columns |= {"w": [1.0, 1.0], "h": [1.0, 1.0], "label": [None, "car"]}
    out = _formats.parse_predictions(_parquet(columns), name="p.parquet")
    assert out.examples == {
        BAD_CLASS: "row 1 (a.jpg): no label",
        BAD_NUMBER: "row 2 (b.jpg): x=nan",
    }
    rows = [{"filename": "a.jpg", "x": 0, "y": 0, "w": 1, "h": 1, "label": "car", "score": 2}]
    out = _formats.parse_predictions(_jsonl(rows), name="p.jsonl")
    assert out.examples == {BAD_NUMBER: "row 1 (a.jpg): score=2"}


def test_a_probabilities_list_of_the_wrong_length_is_a_bad_row():
    columns = {"filename": ["a.jpg", "b.jpg"], "x": [0, 0], "y": [0, 0], "w": [1, 1], "h": [1, 1]}
    columns["probabilities"] = [[0.5, 0.5], [0.2, 0.3, 0.5]]
    out = _formats.parse_predictions(_parquet(columns), name="p.pq", classes=["a", "b"])
    assert out.bad == {BAD_PROBABILITIES: 1} and list(out.boxes) == ["a.jpg"]
    assert out.examples[BAD_PROBABILITIES] == "row 2 (b.jpg): 3 probabilities for 2 classes"


# -- unreadable tables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "kwargs", "match"),
    [
        (b"key,x,y,w,h\na,0,0,1,1\n", "p.csv", {}, r"'p\.csv' has no 'filename' column"),
        (b"filename,x,y,w\na,0,0,1\n", "p.csv", {}, r"'p\.csv' has no box columns \(missing h\)"),
        (b"filename,x1,y1,x2\na,0,0,1\n", "p.csv", {}, r"'p\.csv'.*missing y2"),
        (b"", "p.csv", {}, r"'p\.csv' cannot be read as CSV"),
        (b"not parquet", "s3://b/p.parquet", {}, r"'s3://b/p\.parquet' cannot be read as Parquet"),
        (b'{"a": 1}\n{"a": "x"}\n', "p.jsonl", {}, r"'p\.jsonl' cannot be read as JSON lines"),
        (b"filename,x,y,w,h\n", "p.csv", {"box_units": "inches"}, r"'p\.csv'.*box_units"),
        (
            b"filename,x,y,w,h,probabilities\na,0,0,1,1,[1]\n",
            "p.csv",
            {},
            r"'p\.csv'.*class order is unknown",
        ),
        (
            b"filename,x,y,w,h,prob_a,prob_c\n",
            "p.csv",
            {"classes": ["a", "b"]},
            r"'p\.csv'.*no column for: b; not a class: c",
        ),
        (b"filename,x,y,w,h\n", "p.csv", {"classes": ["a", "a"]}, r"'p\.csv'.*names a more"),
        (b"0 0 0 1 1\n", "a.txt", {}, r"'a\.txt' is YOLO.*parse_yolo"),
    ],
)
def test_unreadable_files_raise_one_error_naming_the_file(data, name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _formats.parse_predictions(data, name=name, **kwargs)


def test_a_table_with_another_extension_is_recognised_by_content():
    rows = [{"filename": "a.jpg", "x": 0, "y": 0, "w": 1, "h": 1, "label": "car"}]
    out = _formats.parse_predictions(_jsonl(rows), name="preds.dat", fmt="table")
    assert out.boxes["a.jpg"] == (_box(0, 0, 1, 1, "car"),)
    columns = {"filename": ["a.jpg"], "x": [0], "y": [0], "w": [1], "h": [1], "label": ["car"]}
    assert _formats.parse_predictions(_parquet(columns), name="p", fmt="table").boxes == out.boxes


# -- COCO -----------------------------------------------------------------------------------

COCO = {
    "images": [{"id": 1, "file_name": "./cam/a.jpg"}, {"id": 2, "file_name": "v.mp4"}],
    "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "person"}],
    "annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.8},
        {"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]},
        {"image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4], "frame_index": 12},
        {"image_id": 2, "bbox": [1, 2, 3, 4], "pts_seconds": 2.5, "probabilities": [0.9, 0.1]},
    ],
}


def test_coco_dict_maps_images_and_categories():
    out = _formats.parse_predictions(json.dumps(COCO).encode(), name="coco.json")
    assert out.rows == 4 and out.bad == {}
    assert out.classes == ("person", "dog")  # category-id order
    a, v = out.boxes["cam/a.jpg"], out.boxes["v.mp4"]
    assert a[0] == _box(10, 20, 30, 40, "person", score=0.8)
    assert math.isnan(a[1].score) and a[1].label == "dog" and not a[1].normalised
    assert (v[0].frame_index, v[0].pts_seconds, v[0].label) == (12, None, "dog")
    assert (v[1].frame_index, v[1].pts_seconds, v[1].label) == (None, 2.5, "person")
    assert v[1].probabilities == (0.9, 0.1)


def test_coco_bad_annotations_are_counted_and_good_ones_kept():
    doc = json.loads(json.dumps(COCO))
    doc["annotations"] += [
        {"image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]},
        {"image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4]},
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]},
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, None, 4]},
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 0, 4]},
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "frame_index": -2},
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "probabilities": [0.5]},
        "not an annotation",
    ]
    out = _formats.parse_predictions(json.dumps(doc).encode(), name="coco.json")
    assert out.rows == 12 and out.n_boxes == 4
    assert out.bad == {
        BAD_FILENAME: 1,
        BAD_CLASS: 1,
        BAD_NUMBER: 3,
        BAD_SIZE: 1,
        BAD_FRAME: 1,
        BAD_PROBABILITIES: 1,
    }
    assert out.examples[BAD_FRAME] == "annotation 10 (cam/a.jpg): frame_index=-2"
    assert out.examples[BAD_PROBABILITIES] == (
        "annotation 11 (cam/a.jpg): 1 probabilities for 2 classes"
    )
    assert out.examples[BAD_FILENAME] == "annotation 5: image_id=9 is not in images"
    assert out.examples[BAD_CLASS] == "annotation 6 (cam/a.jpg): category_id=7 is not in categories"
    assert out.examples[BAD_NUMBER] == "annotation 7 (cam/a.jpg): bbox=[1, 2, 3]"
    assert out.examples[BAD_SIZE] == "annotation 9 (cam/a.jpg): w=0"


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        ({"frame_index": -2}, BAD_FRAME),
        ({"probabilities": [0.5]}, BAD_PROBABILITIES),
        ({"score": 3}, BAD_NUMBER),
        ({"category_id": None}, BAD_CLASS),
        ({"bbox": [1, 2, float("inf"), 4]}, BAD_NUMBER),
    ],
)
def test_coco_annotation_fields_are_checked_like_table_rows(annotation, reason):
    doc = dict(COCO, annotations=[COCO["annotations"][0] | annotation, COCO["annotations"][0]])
    out = _formats.parse_predictions(json.dumps(doc).encode(), name="coco.json")
    assert out.bad == {reason: 1} and out.n_boxes == 1


def test_coco_results_list_names_files_by_image_id():
    results = [
        {"image_id": "a.jpg", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": "a.jpg", "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.4},
        {"image_id": "b.jpg", "category_id": 10, "bbox": [1, 2, 3, 4], "score": 0.3},
    ]
    data = json.dumps(results).encode()
    bare = _formats.parse_predictions(data, name="results.json")
    assert [b.label for b in bare.boxes["a.jpg"]] == ["1", "2"]
    assert bare.classes == ("1", "2", "10")
    # Ids 1..3 with three classes: COCO's 1-based numbering; 0..2: 0-based.
    three = json.dumps([dict(r, category_id=i + 1) for i, r in enumerate(results)]).encode()
    out = _formats.parse_predictions(three, name="r.json", classes=["a", "b", "c"])
    assert [b.label for v in out.boxes.values() for b in v] == ["a", "b", "c"]
    zero = json.dumps([dict(r, category_id=i) for i, r in enumerate(results)]).encode()
    out = _formats.parse_predictions(zero, name="r.json", classes=["a", "b", "c"])
    assert [b.label for v in out.boxes.values() for b in v] == ["a", "b", "c"]
    out = _formats.parse_predictions(data, name="r.json", classes=["a", "b", "c"])
    assert out.bad == {BAD_CLASS: 1} and out.examples[BAD_CLASS] == "annotation 3 (b.jpg): label=10"


def test_coco_dict_without_categories_reads_ids_like_a_results_list():
    doc = {k: v for k, v in COCO.items() if k != "categories"}
    doc["annotations"] = doc["annotations"][:3]
    out = _formats.parse_predictions(json.dumps(doc).encode(), name="c.json")
    assert out.classes == ("1", "3") and out.boxes["v.mp4"][0].label == "3"
    out = _formats.parse_predictions(json.dumps(doc).encode(), name="c.json", classes=["a", "b"])
    assert out.bad == {BAD_CLASS: 2} and out.boxes["cam/a.jpg"][0].label == "b"  # 0-based


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"images": [], "categories": []}, r"'c\.json' is a COCO dict without an 'annotations'"),
        ({"annotations": []}, r"'c\.json' is a COCO dict without an 'images' list"),
        ([{"image_id": 4, "category_id": 1, "bbox": [0, 0, 1, 1]}], r"'c\.json'.*numeric image_id"),
        ("just text", r"'c\.json' is JSON but not COCO"),
        (
            [{"image_id": "a", "category_id": 1, "bbox": [0, 0, 1, 1], "probabilities": [1]}],
            r"'c\.json' has probabilities but the class order is unknown",
        ),
    ],
)
def test_unreadable_coco_files_raise_naming_the_file(doc, match):
    with pytest.raises(ConfigError, match=match):
        _formats.parse_predictions(json.dumps(doc).encode(), name="c.json")


def test_coco_that_is_not_json_or_not_pixels_is_refused():
    with pytest.raises(ConfigError, match=r"'c\.json' cannot be read as JSON"):
        _formats.parse_predictions(b"{nope", name="c.json")
    with pytest.raises(ConfigError, match=r"'c\.json' is COCO, whose boxes are pixels"):
        _formats.parse_predictions(b"[]", name="c.json", box_units="normalised")


# -- YOLO -----------------------------------------------------------------------------------


def test_yolo_lines_become_top_left_normalised_boxes():
    files = {
        "./cam/a.jpg": b"0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.5 0.5 0.9\n",
        "b.jpg": b"",
        "c.jpg": b"\n\n2 0.5 0.5 1 1\n",
    }
    out = _formats.parse_yolo(files, classes=["car", "person", "bike"])
    assert out.rows == 3 and out.bad == {} and out.classes == ("car", "person", "bike")
    assert list(out.boxes) == ["cam/a.jpg", "c.jpg"]
    first, second = out.boxes["cam/a.jpg"]
    assert (first.x, first.y, first.w, first.h) == pytest.approx((0.4, 0.3, 0.2, 0.4))
    assert first.normalised and first.frame_index == 0 and first.pts_seconds is None
    assert first.label == "car" and math.isnan(first.score)
    assert second == _box(0.0, 0.5, 0.5, 0.5, "person", normalised=True, score=0.9)


@pytest.mark.parametrize(
    ("line", "reason", "example"),
    [
        ("0 0.5 0.5 0.2", BAD_NUMBER, "line 2 (a.jpg): 4 fields"),
        ("0 0.5 0.5 0.2 0.2 0.9 7", BAD_NUMBER, "7 fields"),
        ("0 0.5 x 0.2 0.2", BAD_NUMBER, "line 2 (a.jpg): cy='x'"),
        ("0 0.5 0.5 0.2 0.2 1.5", BAD_NUMBER, "score=1.5"),
        ("car 0.5 0.5 0.2 0.2", BAD_CLASS, "line 2 (a.jpg): class car"),
        ("3 0.5 0.5 0.2 0.2", BAD_CLASS, "class 3"),
        ("-1 0.5 0.5 0.2 0.2", BAD_CLASS, "class -1"),
        ("0.5 0.5 0.5 0.2 0.2", BAD_CLASS, "class 0.5"),
        ("0 0.5 0.5 0 0.2", BAD_SIZE, "line 2 (a.jpg): w=0"),
        ("0 0.5 0.5 0.2 -0.1", BAD_SIZE, "h=-0.1"),
    ],
)
def test_yolo_bad_lines_are_counted_and_good_ones_kept(line, reason, example):
    good = "1 0.5 0.5 0.2 0.2"
    out = _formats.parse_yolo({"a.jpg": f"{good}\n{line}\n{good}\n".encode()}, classes=list("abc"))
    assert out.bad == {reason: 1} and example in out.examples[reason]
    assert [b.label for b in out.boxes["a.jpg"]] == ["b", "b"]


def test_yolo_needs_classes_and_text():
    with pytest.raises(ConfigError, match=re.escape("YOLO predictions need objects.classes")):
        _formats.parse_yolo({"a.jpg": b"0 0.5 0.5 0.1 0.1\n"}, classes=[])
    with pytest.raises(ConfigError, match=r"YOLO labels for 'a\.jpg' are not text"):
        _formats.parse_yolo({"a.jpg": b"\xff\xfe\x00bad"}, classes=["car"])
