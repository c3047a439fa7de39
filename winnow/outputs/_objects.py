"""Objects (predicted boxes on picked frames) in export formats, and their cards for the report.

- Label Studio: the `predictions` of an image task, one `rectanglelabels` region per box, in
  percentages of the frame (Label Studio's "Import pre-annotations" JSON), and the labelling
  config whose tag names (`label` on `image`) those regions refer to;
- COCO detection JSON: the picked frames as `images`, the boxes as `annotations` in pixels;
- `objects.csv`: one row per object, whether it was picked and why;
- a PNG card per picked object: the whole frame with the box drawn, beside the crop.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from winnow.records import ObjectRows
from winnow.summary import visible

# Names of the labelling config's tags, which every prediction region refers to.
LABELSTUDIO_FROM_NAME = "label"
LABELSTUDIO_TO_NAME = "image"

OBJECTS_CSV_COLUMNS = (
    "object_id",
    "sample_id",
    "key",
    "frame_index",
    "x",
    "y",
    "w",
    "h",
    "label",
    "score",
    "picked",
    "reason",
)

BOX_COLOUR = (255, 0, 255)  # magenta: rare in real footage, so the drawn box stands out
_CARD_BACKGROUND = (238, 238, 238)
_CARD_GAP_PX = 4
_MAX_ASPECT = 4  # a panel is at most this many times as wide as high (panoramas, thin boxes)
_XML_ILLEGAL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def labelstudio_predictions(
    objects: ObjectRows, *, width: int, height: int, model_version: str = "winnow"
) -> list[dict[str, Any]]:
    """The Label Studio `predictions` of one frame's task: its boxes as pre-annotations.

    Args:
        objects: The frame's objects (rows of one sample), boxes in pixels of the full frame.
        width: The frame's width in pixels (after rotation), as the boxes are measured.
        height: The frame's height in pixels.
        model_version: Shown in Label Studio beside the prediction.

    Returns:
        One prediction: `model_version`, `score` (the mean of the objects' finite scores;
        absent when none has one) and `result`, one `rectanglelabels` region per object with
        x, y, width and height in percent of the frame; empty when there are no objects.

    Raises:
        ValueError: If `width` or `height` is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"a frame of {width}x{height} pixels: boxes need its positive size")
    if not len(objects):
        return []
    return [_labelstudio_prediction(objects, width=width, height=height, version=model_version)]


def _labelstudio_prediction(
    objects: ObjectRows, *, width: int, height: int, version: str
) -> dict[str, Any]:
    result = []
    for i in range(len(objects)):
        region: dict[str, Any] = {
            "id": str(objects.object_id[i])[:10],
            "from_name": LABELSTUDIO_FROM_NAME,
            "to_name": LABELSTUDIO_TO_NAME,
            "type": "rectanglelabels",
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {
                "x": 100.0 * float(objects.x[i]) / width,
                "y": 100.0 * float(objects.y[i]) / height,
                "width": 100.0 * float(objects.w[i]) / width,
                "height": 100.0 * float(objects.h[i]) / height,
                "rotation": 0,
                "rectanglelabels": [str(objects.label[i])],
            },
        }
        if (score := _finite(objects.score[i])) is not None:
            region["score"] = score
        result.append(region)
    prediction: dict[str, Any] = {"model_version": version, "result": result}
    scores = [r["score"] for r in result if "score" in r]
    if scores:
        prediction["score"] = sum(scores) / len(scores)
    return prediction


def labelstudio_labels_config(labels: Sequence[str]) -> str:
    """A Label Studio labelling config for boxes on images, with these labels.

    Its tag names are the ones `labelstudio_predictions` regions refer to (`label` on `image`),
    so imported predictions show as editable boxes.

    Args:
        labels: Class names, in the order Label Studio lists them (repeats are dropped).

    Returns:
        The config XML, each label XML-escaped.

    Raises:
        ValueError: If there is no label, or one holds a control character XML cannot carry.
    """
    unique = list(dict.fromkeys(str(label) for label in labels))
    if not unique:
        raise ValueError("a Label Studio labelling config needs at least one label")
    bad = [label for label in unique if _XML_ILLEGAL_RE.search(label)]
    if bad:
        raise ValueError(f"label {bad[0]!r} holds a control character XML cannot carry")
    items = "".join(f'<Label value="{html.escape(label, quote=True)}"/>' for label in unique)
    return (
        f'<View><Image name="{LABELSTUDIO_TO_NAME}" value="$image"/>'
        f'<RectangleLabels name="{LABELSTUDIO_FROM_NAME}" toName="{LABELSTUDIO_TO_NAME}">'
        f"{items}</RectangleLabels></View>"
    )


def coco_json(frames: list[dict[str, Any]], objects: ObjectRows) -> bytes:
    """A COCO detection file of picked frames and their predicted boxes.

    Args:
        frames: One dict per frame, in export order, with `sample_id`, `filename` (the exported
            name), `key`, `frame_index`, `width` and `height`. A repeated sample is kept once.
        objects: Objects; those whose `sample_id` is not among the frames are left out.

    Returns:
        UTF-8 JSON (sorted keys): `images` (id 1.. in frame order, `file_name`, size and the
        `winnow_sample_id`, `key`, `frame_index`), `categories` (id 1.. over the sorted
        labels) and `annotations` (id 1.., by image then object id; `bbox` [x, y, w, h] and
        `area` in pixels, `iscrowd` 0, `score` when known, `winnow_object_id`).
    """
    images: dict[str, dict[str, Any]] = {}
    for frame in frames:
        sid = str(frame["sample_id"])
        if sid not in images:
            images[sid] = {
                "id": len(images) + 1,
                "file_name": str(frame["filename"]),
                "width": int(frame["width"]),
                "height": int(frame["height"]),
                "winnow_sample_id": sid,
                "key": str(frame["key"]),
                "frame_index": int(frame["frame_index"]),
            }
    rows = [i for i in range(len(objects)) if str(objects.sample_id[i]) in images]
    rows.sort(key=lambda i: (images[str(objects.sample_id[i])]["id"], str(objects.object_id[i])))
    labels = sorted({str(objects.label[i]) for i in rows})
    category = {label: n + 1 for n, label in enumerate(labels)}
    annotations = [
        _coco_annotation(objects, i, number=n + 1, image=images[str(objects.sample_id[i])]["id"])
        | {"category_id": category[str(objects.label[i])]}
        for n, i in enumerate(rows)
    ]
    document = {
        "info": {"description": "Winnow: picked frames and their predicted boxes"},
        "images": list(images.values()),
        "categories": [{"id": category[label], "name": label} for label in labels],
        "annotations": annotations,
    }
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _coco_annotation(objects: ObjectRows, i: int, *, number: int, image: int) -> dict[str, Any]:
    x, y, w, h = (round(float(v[i]), 3) for v in (objects.x, objects.y, objects.w, objects.h))
    annotation: dict[str, Any] = {
        "id": number,
        "image_id": image,
        "bbox": [x, y, w, h],
        "area": round(w * h, 3),
        "iscrowd": 0,
        "winnow_object_id": str(objects.object_id[i]),
    }
    if (score := _finite(objects.score[i])) is not None:
        annotation["score"] = round(score, 6)
    return annotation


def _csv_number(value: float) -> str:
    """A number for CSV; NaN as an empty cell (pandas reads it back as NaN)."""
    value = float(value)
    return "" if math.isnan(value) else format(value, ".8g")


def objects_csv(objects: ObjectRows, *, picked: Mapping[str, str]) -> bytes:
    """Objects as CSV: one row per object, its box in pixels, and whether it was picked.

    Args:
        objects: The objects, in the order of the rows.
        picked: Object id → why it was picked, for the picked objects.

    Returns:
        UTF-8 CSV with a header (`OBJECTS_CSV_COLUMNS`); `picked` is 1 or 0, `reason` empty for
        objects not picked, `score` empty when unknown. Keys are quoted as CSV requires.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OBJECTS_CSV_COLUMNS)
    for i in range(len(objects)):
        oid = str(objects.object_id[i])
        writer.writerow(
            [
                oid,
                objects.sample_id[i],
                objects.key[i],
                int(objects.frame_index[i]),
                *(_csv_number(v[i]) for v in (objects.x, objects.y, objects.w, objects.h)),
                objects.label[i],
                _csv_number(objects.score[i]),
                int(oid in picked),
                picked.get(oid, ""),
            ]
        )
    return buf.getvalue().encode("utf-8")


def object_card_png(
    frame_rgb: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    label: str,
    score: float,
    size: int = 160,
) -> bytes:
    """A picked object's card for the report: the frame with its box drawn, beside the crop.

    Args:
        frame_rgb: The full-size frame, uint8 (H, W, 3).
        box: (x, y, w, h) in pixels of the frame; parts outside the frame are clipped, and a
            box smaller than a pixel (or wholly outside) still shows the nearest pixel.
        label: The predicted class, written under the frame.
        score: Its confidence (NaN: not written).
        size: Height of the card in pixels.

    Returns:
        PNG bytes, `size` pixels high: the frame (box in `BOX_COLOUR`, 2 px), then the crop at
        full resolution scaled to the same height (each at most 4 times as wide as high).

    Raises:
        ValueError: If the frame is not a non-empty (H, W, 3) array or `size` is under 16.
    """
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or not frame.shape[0] or not frame.shape[1]:
        raise ValueError(f"a frame must be a non-empty (H, W, 3) array, got {frame.shape}")
    if size < 16:
        raise ValueError(f"a card is at least 16 pixels high, got size={size}")
    return _object_card_png(frame.astype(np.uint8, copy=False), box, label, score, size)


def _object_card_png(
    frame: np.ndarray, box: tuple[float, ...], label: str, score: float, size: int
) -> bytes:
    image = Image.fromarray(frame)
    x0, y0, x1, y1 = _pixel_box(box, width=image.width, height=image.height)
    left, scale, top = _fit(image, size)
    draw = ImageDraw.Draw(left)
    caption = label if math.isnan(float(score)) else f"{label} {float(score):.2f}"
    _caption(draw, visible(caption), height=left.height)
    # Drawn after the caption, so a box at the bottom of the frame stays whole.
    bx0 = min(int(x0 * scale), left.width - 1)
    by0 = min(int(y0 * scale) + top, left.height - 1)
    bx1 = min(max(math.ceil(x1 * scale) - 1, bx0 + 3), left.width - 1)
    by1 = min(max(math.ceil(y1 * scale) - 1 + top, by0 + 3), left.height - 1)
    draw.rectangle((bx0, by0, bx1, by1), outline=BOX_COLOUR, width=2)
    right, _, _ = _fit(image.crop((x0, y0, x1, y1)), size)
    card = Image.new("RGB", (left.width + _CARD_GAP_PX + right.width, size), _CARD_BACKGROUND)
    card.paste(left, (0, 0))
    card.paste(right, (left.width + _CARD_GAP_PX, 0))
    buf = io.BytesIO()
    card.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _pixel_box(box: tuple[float, ...], *, width: int, height: int) -> tuple[int, int, int, int]:
    """The box as whole pixels inside the frame, at least one pixel wide and high."""
    x, y, w, h = (float(v) if math.isfinite(float(v)) else 0.0 for v in box)
    x0 = min(max(math.floor(x), 0), width - 1)
    y0 = min(max(math.floor(y), 0), height - 1)
    x1 = min(max(math.ceil(x + w), x0 + 1), width)
    y1 = min(max(math.ceil(y + h), y0 + 1), height)
    return x0, y0, x1, y1


def _fit(image: Image.Image, size: int) -> tuple[Image.Image, float, int]:
    """The image scaled to `size` high, at most `_MAX_ASPECT` times as wide.

    Returns the panel, the scale, and the offset of the picture from the panel's top (a panel
    too wide to fill its height is centred on a background).
    """
    scale = min(size / image.height, _MAX_ASPECT * size / image.width)
    width = max(1, round(image.width * scale))
    height = max(1, min(size, round(image.height * scale)))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    if height == size:
        return resized, scale, 0
    canvas = Image.new("RGB", (width, size), _CARD_BACKGROUND)
    canvas.paste(resized, (0, (size - height) // 2))
    return canvas, scale, (size - height) // 2


def _caption(draw: ImageDraw.ImageDraw, text: str, *, height: int) -> None:
    """Write `text` at the bottom left, white on a dark band, so it reads on any frame."""
    left, top, right, bottom = draw.textbbox((0, 0), text)
    y = height - (bottom - top) - 4
    draw.rectangle((0, y - 1, right - left + 4, height), fill=(0, 0, 0))
    draw.text((2 - left, y - top), text, fill=(255, 255, 255))
