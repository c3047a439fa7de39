"""Names in the output store: frame PNGs (named as the reference product names them), exports."""

from __future__ import annotations

import re

from winnow.errors import ConfigError
from winnow.records import NAME_RE
from winnow.storage import MAX_KEY_BYTES, MAX_NAME_BYTES, check_key, key_problem

FRAMES_PREFIX = "frames"
TAGS_PREFIX = "tags"
# Names of the per-tag exports, in the order they are written (the report last).
EXPORT_FILES = {
    "filenames": "filenames.txt",
    "samples_csv": "samples.csv",
    "labelstudio": "labelstudio.json",
    "members_csv": "members.csv",
    "members_parquet": "members.parquet",
    "embedding_plot": "embedding.png",
    "report": "report.html",
}
# Written only by some runs (clips: `selection.unit: clip`).
OPTIONAL_EXPORT_FILES = {
    "clips_csv": "clips.csv",
    "labelstudio_clips": "labelstudio_clips.json",
    "objects_csv": "objects.csv",
    "coco": "coco.json",
}

# The tag names the flow accepts (winnow/params.py): one safe path component.


def split_key(key: str) -> tuple[str, str, str]:
    """A checked key's folder, file stem and last extension (`a/b.v2.mp4` → `a`, `b.v2`, `mp4`).

    A file name without extension, or a dot file such as `.mp4`, has the extension "".

    Raises:
        ConfigError: If `key` is not a valid relative key.
    """
    folder, _, name = check_key(key).rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return folder, name, ""
    return folder, stem, ext


def frame_name(key: str, frame_index: int, frames_total: int) -> str:
    """Output key of one video frame, named as the reference product names it.

    Args:
        key: The video's key in the source, e.g. `cam1/drive.mp4`.
        frame_index: Frame number in presentation order, from 0.
        frames_total: Frames in the video; the index is zero-padded to its number of digits
            (a count below 1 counts as 1).

    Returns:
        `frames/<key without extension>-<padded index>-<extension>.png`, e.g.
        `frames/cam1/drive-0099-mp4.png` for frame 99 of 1,200. Only the last extension of the
        file name is split off (`a.b/c.v2.mp4` → `frames/a.b/c.v2-…-mp4.png`); a key without
        extension gives `frames/<key>-<padded index>.png`.

    Raises:
        ValueError: If `frame_index` is negative.
        ConfigError: If `key` is not a valid relative key.
    """
    if frame_index < 0:
        raise ValueError(f"frame index {frame_index} of {key!r} is negative")
    folder, stem, ext = split_key(key)
    digits = len(str(max(int(frames_total), 1)))
    base = f"{stem}-{int(frame_index):0{digits}d}" + (f"-{ext}" if ext else "")
    return f"{FRAMES_PREFIX}/{folder}/{base}.png" if folder else f"{FRAMES_PREFIX}/{base}.png"


# A file name shaped like a frame PNG name: `<stem>-<digits>[-<extension>].png`.
_FRAME_FILE_RE = re.compile(r"^.+-[0-9]+(-[^./]+)?\.png$")
# Frame numbers are padded to the digits of the video's frame count; this many is plenty.
_WORST_DIGITS = 9


def output_name_problem(key: str, kind: str) -> str | None:
    """Why a listed file cannot be given safe output names (None: it can).

    Besides the key rules of `storage.key_problem`, a video (or GIF, whose frames may be
    exported like a video's) must have frame names that fit the limits, and none of its folders
    may be named like a frame PNG: on a file system `frames/<folder>` could then have to be a
    file (another video's frame) and a folder at once. Images are referenced in place, so only
    the key rules apply to them.

    Args:
        key: The file's key relative to the source root, as listed.
        kind: `image` or `video`.

    Returns:
        A short reason, or None.
    """
    problem = key_problem(key)
    if problem is not None:
        return problem
    if kind != "video" and not key.lower().endswith(".gif"):
        return None
    name = frame_name(key, 0, 10**_WORST_DIGITS - 1)
    if len(name.encode("utf-8")) > MAX_KEY_BYTES:
        return f"its frames' output names would be longer than {MAX_KEY_BYTES} bytes"
    if len(name.rsplit("/", 1)[-1].encode("utf-8")) > MAX_NAME_BYTES:
        return f"its frames' output file names would be longer than {MAX_NAME_BYTES} bytes"
    folders = key.split("/")[:-1]
    for folder in folders:
        if _FRAME_FILE_RE.match(folder):
            return (
                f"its folder {folder!r} is named like a frame PNG, so its frames' folder could "
                "collide with another video's frame file in the output"
            )
    return None


def export_name(key: str, kind: str, frame_index: int, frames_total: int) -> str:
    """The name a sample is exported under: its frame name for a video, its key for an image.

    Args:
        key: The source key of the sample's file.
        kind: `video` or `image`.
        frame_index: Frame number (ignored for images).
        frames_total: Frames in the video (ignored for images).

    Returns:
        The line this sample has in `filenames.txt`.

    Raises:
        ValueError: If `kind` is neither `video` nor `image`, or the frame index is negative.
    """
    if kind == "video":
        return frame_name(key, frame_index, frames_total)
    if kind == "image":
        return key
    raise ValueError(f"unknown media kind {kind!r} for {key!r}: expected 'video' or 'image'")


def tag_keys(tag: str, *, optional: bool = False) -> dict[str, str]:
    """Output keys of a tag's exports (`filenames`, `samples_csv`, … → `tags/<tag>/…`).

    With `optional`, the keys of `OPTIONAL_EXPORT_FILES` (not every run writes them) instead.

    Raises:
        ConfigError: If the tag is not a valid tag name.
    """
    if not isinstance(tag, str) or not NAME_RE.match(tag):
        raise ConfigError(
            f"invalid tag name {tag!r}: use letters, digits, '.', '_' or '-' (at most 100), "
            "starting with a letter or digit"
        )
    files = OPTIONAL_EXPORT_FILES if optional else EXPORT_FILES
    return {name: f"{TAGS_PREFIX}/{tag}/{file}" for name, file in files.items()}
