"""Objects end to end: predictions in every format, crops from full-size frames, object picks,
their exports (COCO, Label Studio pre-annotations, objects.csv, report), re-selection and
re-embedding with objects, and a pool made before objects existed running on."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.integration.conftest import run
from winnow.datapool import Datapool
from winnow.storage import LocalStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

OLD_POOL = Path(__file__).parents[1] / "data" / "pool-2026-12-07"
W, H = 320, 240  # images: full size, far above the model's 32 px
FAST = {
    "frames": {"every_n_frames": 4},
    "embedding": {"weights": "none", "input_size": 32, "batch_size": 16},
    "shard_files": 2,
}
COLOURS = {"car": (220, 30, 30), "person": (30, 30, 220)}
# (x, y, w, h, label) in pixels: multiples of W/20 and H/20, exact as fractions too (YOLO).
LAYOUTS = [
    [(32, 24, 96, 72, "car"), (176, 120, 64, 96, "person")],
    [(16, 12, 64, 48, "person"), (160, 96, 128, 96, "car"), (240, 24, 48, 48, "car")],
    [(64, 48, 160, 120, "car")],
]


def _image(path: Path, boxes: list[tuple], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(90, 160, (H, W, 3), dtype=np.uint8)  # texture
    for x, y, w, h, label in boxes:
        rgb[y : y + h, x : x + w] = COLOURS[label]
        rgb[y + h // 4 : y + h // 2, x + w // 4 : x + w // 2] = 255 - seed * 20  # detail
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def _video(path: Path, frames: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for i in range(frames):
            rgb = np.full((96, 160, 3), 40 + 15 * i, np.uint8)
            rgb[20:60, 10 + 5 * i : 50 + 5 * i] = (200, 40, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))


def _scenes(raw: Path) -> dict[str, list[tuple]]:
    """Six images and one video; their true boxes (the video's on frames 0 and 4)."""
    truth = {}
    for i in range(6):
        boxes = LAYOUTS[i % 3]
        _image(raw / f"img/{i}.png", boxes, seed=i)
        truth[f"img/{i}.png"] = boxes
    _video(raw / "cam/drive.mp4")
    truth["cam/drive.mp4"] = [(10, 20, 40, 40, "car")]
    return truth


def _table_rows(truth: dict[str, list[tuple]]) -> list[dict]:
    rows = []
    for key, boxes in sorted(truth.items()):
        frames = (0, 4) if key.endswith(".mp4") else (0,)
        for frame in frames:
            for n, (x, y, w, h, label) in enumerate(boxes):
                p = 0.6 + 0.1 * (n % 4)
                probs = [p, 1 - p] if label == "car" else [1 - p, p]
                rows.append(
                    {"filename": key, "frame_index": frame, "x": x + 5 * (frame // 4), "y": y}
                    | {"w": w, "h": h, "label": label, "score": p}
                    | {"prob_car": probs[0], "prob_person": probs[1]}
                )
    return rows


BAD_ROWS = [  # one per reason
    {"filename": "img/missing.png", "frame_index": 0, "x": 1, "y": 1, "w": 20, "h": 20},
    {"filename": "img/0.png", "frame_index": 0, "x": float("nan"), "y": 1, "w": 20, "h": 20},
    {"filename": "img/0.png", "frame_index": 0, "x": 1, "y": 1, "w": -20, "h": 20},
    {"filename": "img/1.png", "frame_index": 0, "x": 1, "y": 1, "w": 20, "h": 20, "label": "truck"},
    {"filename": "img/2.png", "frame_index": 0, "x": 900, "y": 900, "w": 20, "h": 20},
    {"filename": "img/3.png", "frame_index": 0, "x": 1, "y": 1, "w": 3, "h": 30},
    {"filename": "cam/drive.mp4", "frame_index": 1, "x": 1, "y": 1, "w": 30, "h": 30},
]
REASONS = {
    "unknown file": 1,
    "not a finite number": 1,
    "negative or zero size": 1,
    "unknown class": 1,
    "box outside the frame": 1,
    "smaller than objects.min_size": 1,
    "frame not sampled": 1,
}


def _csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    names = ["filename", "frame_index", "x", "y", "w", "h", "label", "score"]
    names += ["prob_car", "prob_person"]
    writer = csv.DictWriter(out, names)
    writer.writeheader()
    for row in rows:
        filled = {"label": "car", "score": 0.5, "prob_car": 0.5, "prob_person": 0.5} | row
        writer.writerow(filled)
    return out.getvalue().encode()


def test_objects_are_cut_at_full_size_picked_and_exported(backend, tmp_path):
    source, output, storage, s3 = backend
    raw = tmp_path / "scenes"
    truth = _scenes(raw)
    from winnow.storage import open_store

    src, dst = open_store(source, s3), open_store(output, s3)
    for path in sorted(raw.rglob("*.*")):
        src.put(path.relative_to(raw).as_posix(), path.read_bytes())
    src.put("labels/preds.csv", _csv(_table_rows(truth) + BAD_ROWS))
    good = sum(len(b) for b in truth.values()) + 1  # the video's car on frames 0 and 4
    params = {
        **FAST,
        "objects": {"predictions": "labels/preds.csv"},
        "selection": {"n_samples": 3, "unit": "object"},
    }
    summary = run(source, output, storage, **params)
    assert summary["objects"] == good
    assert summary["objects_skipped"] == REASONS
    assert summary["selected"] == 3 and summary["selected_objects"] >= 3
    # the summary links the optional files this run wrote, and only those
    assert {"objects_csv", "coco"} <= set(summary["outputs"])
    assert not {"clips_csv", "labelstudio_clips"} & set(summary["outputs"])

    snap = Datapool(dst.child("pool")).load()
    objects = snap.objects()
    assert len(objects) == good and snap.manifest.counts["objects"] == good
    samples = snap.samples()
    assert set(objects.sample_id) <= set(samples.sample_id)  # every object has its frame
    (tag,) = snap.tags
    assert len(set(tag.sample_ids)) == 3  # frames to label, each once
    assert set(tag.sample_ids) <= set(objects.sample_id)  # only frames with objects
    frame = objects.take(np.flatnonzero(objects.key == "cam/drive.mp4"))
    assert sorted(frame.frame_index.tolist()) == [0, 4]
    assert sorted(frame.x.tolist()) == [10.0, 15.0]

    # The crop is cut from the full-size picture: the model gives our own full-size crop's
    # embedding (the 32-px frame holds only a few pixels of a box).
    from winnow.embedding import EmbeddingOptions, load_embedder
    from winnow.objects._crops import cut_crop

    embedder = load_embedder(EmbeddingOptions(**FAST["embedding"], device="cpu"))
    row = int(np.flatnonzero(objects.key == "img/1.png")[0])
    full = np.asarray(Image.open(raw / "img/1.png").convert("RGB"))
    box = tuple(float(v) for v in objects.boxes()[row])
    mine = embedder.embed(cut_crop(full, box, padding=0.1, size=32)[None])[0]
    assert float(np.dot(mine.astype(np.float32), objects.embedding[row].astype(np.float32))) > 0.999

    picked = {
        r["object_id"]: r
        for r in csv.DictReader(io.StringIO(dst.get(f"tags/{tag.name}/objects.csv").decode()))
    }
    assert {r["sample_id"] for r in picked.values()} == set(tag.sample_ids)
    assert sum(r["picked"] == "1" for r in picked.values()) == summary["selected_objects"]
    coco = json.loads(dst.get(f"tags/{tag.name}/coco.json"))
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == len(picked)
    assert {c["name"] for c in coco["categories"]} <= {"car", "person"}
    tasks = json.loads(dst.get(f"tags/{tag.name}/labelstudio.json"))
    regions = [r for t in tasks for p in t["predictions"] for r in p["result"]]
    assert len(regions) == len(picked) and {r["type"] for r in regions} == {"rectanglelabels"}
    report = dst.get(f"tags/{tag.name}/report.html").decode()
    assert "Objects" in report and report.count("data:image/png;base64") >= 3

    # The same job again, everything reprocessed: the same objects (stable ids).
    again = run(source, output, storage, **params, process_all=True)
    assert again["objects"] == good
    assert set(_objects_of(dst).object_id) == set(objects.object_id)


def _objects_of(store):
    return Datapool(store.child("pool")).load().objects()


def _write(raw: Path, fmt: str, truth: dict[str, list[tuple]]) -> dict:
    """The same image boxes in `fmt`; the objects parameters that read them."""
    rows = [r for r in _table_rows(truth) if r["filename"].endswith(".png")]
    classes = ["car", "person"]
    if fmt == "csv":
        (raw / "p.csv").write_bytes(_csv(rows))
        return {"predictions": "p.csv"}
    if fmt == "parquet":
        table = pa.table({k: [r[k] for r in rows] for k in ("filename", "x", "y", "w", "h")})
        table = table.append_column("label", pa.array([r["label"] for r in rows]))
        table = table.append_column(
            "probabilities", pa.array([[r["prob_car"], r["prob_person"]] for r in rows])
        )
        pq.write_table(table, raw / "p.parquet")
        return {"predictions": "p.parquet", "classes": classes}
    if fmt == "jsonl":
        lines = [json.dumps({k: r[k] for k in ("filename", "label")} | _norm(r)) for r in rows]
        (raw / "p.jsonl").write_text("\n".join(lines))
        return {"predictions": "p.jsonl", "box_units": "normalised"}
    if fmt == "coco":
        names = sorted({r["filename"] for r in rows})
        images = [
            {"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(names)
        ]
        annotations = [
            {
                "image_id": names.index(r["filename"]) + 1,
                "category_id": classes.index(r["label"]) + 1,
            }
            | {"bbox": [r["x"], r["y"], r["w"], r["h"]], "score": r["score"]}
            for r in rows
        ]
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(classes)]
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (raw / "p.json").write_text(json.dumps(coco))
        return {"predictions": "p.json"}
    for key in sorted({r["filename"] for r in rows}):  # yolo: a .txt beside each image
        lines = [f"{classes.index(r['label'])} {_yolo(r)}" for r in rows if r["filename"] == key]
        (raw / key).with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return {"format": "yolo", "classes": classes}


def _norm(r: dict) -> dict:
    return {"x": r["x"] / W, "y": r["y"] / H, "w": r["w"] / W, "h": r["h"] / H}


def _yolo(r: dict) -> str:
    n = _norm(r)
    return f"{n['x'] + n['w'] / 2} {n['y'] + n['h'] / 2} {n['w']} {n['h']}"


def test_every_predictions_format_gives_the_same_objects(backend, tmp_path):
    from winnow.storage import open_store

    source, output, storage, s3 = backend
    found = {}
    for fmt in ("csv", "parquet", "jsonl", "coco", "yolo"):
        raw = tmp_path / fmt / "raw"
        truth = {k: v for k, v in _scenes(raw).items() if k.endswith(".png")}
        (raw / "cam/drive.mp4").unlink()
        objects = _write(raw, fmt, truth)
        src, out = open_store(f"{source}/{fmt}", s3), open_store(f"{output}/{fmt}", s3)
        for path in sorted(raw.rglob("*.*")):
            src.put(path.relative_to(raw).as_posix(), path.read_bytes())
        summary = run(
            src.url, out.url, storage, **FAST, objects=objects, selection={"n_samples": 2}
        )
        assert summary["objects"] == 12 and not summary["objects_skipped"], (fmt, summary)
        rows = Datapool(out.child("pool")).load().objects()
        # Ids hash the file's fingerprint (each format has its own copy): compare boxes.
        boxes = [tuple(np.round(b, 3)) for b in rows.boxes().tolist()]
        found[fmt] = sorted(zip(rows.key, boxes, rows.label, strict=True))
    differ = {
        k: sorted(set(v) ^ set(found["csv"]))[:4] for k, v in found.items() if v != found["csv"]
    }
    assert not differ, differ


def test_reselect_and_reembed_work_on_objects(tmp_path):
    from flows.reembed import reembed
    from flows.reselect import reselect
    from winnow.training import ReembedParams, ReselectParams

    raw, out = tmp_path / "raw", tmp_path / "out"
    truth = _scenes(raw)
    (raw / "preds.csv").write_bytes(_csv(_table_rows(truth)))
    objects = {"predictions": "preds.csv"}
    run(str(raw), str(out), **FAST, objects=objects, selection={"n_samples": 2})
    before = _objects_of(LocalStore(out))
    from winnow.api import open_pool

    table = open_pool(str(out)).objects("run-0001")  # the notebook API: objects with frames
    assert set(table.sample_id) == set(
        Datapool(LocalStore(out).child("pool")).load().tags[0].sample_ids
    ) & set(before.sample_id)
    assert {"x", "y", "w", "h", "label", "key", "frame_index", "frame_width"} <= set(table.columns)
    assert (table.x + table.w <= table.frame_width).all()

    params = ReselectParams.model_validate(
        {"output": str(out), "selection": {"n_samples": 2, "unit": "object"}}
    )
    result = reselect(**{n: getattr(params, n) for n in ReselectParams.model_fields})
    assert result["selected"] == 2 and result["selected_objects"] >= 2
    snap = Datapool(LocalStore(out).child("pool")).load()
    assert not set(snap.tags[0].sample_ids) & set(snap.tags[1].sample_ids)  # the dataset held
    assert set(snap.tags[1].sample_ids) <= set(before.sample_id)

    # unit frame, ranked by its objects' uncertainty (the frames' probabilities column)
    params = ReselectParams.model_validate(
        {
            "output": str(out),
            "selection": {"n_samples": 1, "strategies": [{"type": "uncertainty"}]},
        }
    )
    reselect(**{n: getattr(params, n) for n in ReselectParams.model_fields})
    (_, _, third) = Datapool(LocalStore(out).child("pool")).load().tags
    assert set(third.sample_ids) <= set(before.sample_id)  # a frame with objects

    new = {"weights": "none", "input_size": 48, "batch_size": 16, "seed": 3}
    params = ReembedParams.model_validate({"output": str(out), "embedding": new})
    reembed(**{n: getattr(params, n) for n in ReembedParams.model_fields})
    after = _objects_of(LocalStore(out))
    assert sorted(after.object_id) == sorted(before.object_id)  # the same boxes, cut again
    order = np.argsort(after.object_id)
    was = before.embedding[np.argsort(before.object_id)]
    assert not np.allclose(after.embedding[order], was)  # with the new model
    assert (after.w[order] == before.w[np.argsort(before.object_id)]).all()


def test_a_pool_made_before_objects_loads_and_gains_them(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(OLD_POOL, out / "pool")
    before = Datapool(LocalStore(out).child("pool")).load()
    assert before.version == 1 and len(before.objects()) == 0
    assert "objects" not in before.manifest.parts
    (old_tag,) = before.tags
    raw = tmp_path / "raw"
    truth = {k: v for k, v in _scenes(raw).items() if k.endswith(".png")}
    (raw / "preds.csv").write_bytes(_csv(_table_rows(truth)))
    summary = run(
        str(raw),
        str(out),
        **{**FAST, "embedding": {"weights": "none", "input_size": 32}},
        objects={"predictions": "preds.csv"},
        selection={"n_samples": 2, "unit": "object"},
    )
    assert summary["tag"] == "run-0002" and summary["objects"] == 12
    after = Datapool(LocalStore(out).child("pool")).load()
    assert "objects" in after.manifest.parts and len(after.objects()) == 12
    assert after.tags[0].sample_ids == old_tag.sample_ids
    assert len(after.samples(old_tag.sample_ids)) == 3  # nothing already stored is lost


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "not found"), (b"\x00\x01\x02 not a table", "cannot"), (b"a,b\n1,2\n", "filename")],
)
def test_an_unreadable_predictions_file_is_one_error_naming_it_before_any_decoding(
    tmp_path, content, expected
):
    from winnow.errors import ConfigError

    raw, out = tmp_path / "raw", tmp_path / "out"
    _image(raw / "a.png", LAYOUTS[0], seed=0)
    if content is not None:
        (raw / "preds.csv").write_bytes(content)
    with pytest.raises(ConfigError, match="preds.csv") as failed:
        run(str(raw), str(out), **FAST, objects={"predictions": "preds.csv"})
    assert expected in str(failed.value)
    assert not (out / "pool" / "staging").exists()  # nothing was decoded or staged
