"""What a file is and why it failed: content sniffing and short, path-free failure reasons."""

from __future__ import annotations

import struct
from pathlib import Path

import av


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # let the decoder report the real problem


def _reason(exc: BaseException) -> str:
    """A short reason for a decoding error, without the local file path."""
    if isinstance(exc, av.FFmpegError):
        return exc.strerror or type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_an_image(path: Path) -> str:
    what = _sniff(path)
    return "not an image: Pillow cannot identify the format" + (
        f" (content looks like {what})" if what else ""
    )


def _header_size(path: Path) -> tuple[int, int] | None:
    """The width and height a PNG, GIF or BMP header claims, read from its first bytes.

    For a file Pillow cannot open (e.g. a header with no image data after it): its claimed size
    is still what the pixel budget must judge, not "cannot identify the format".
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        height = abs(height)  # negative: rows stored top-down
    else:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _sniff(path: Path) -> str | None:
    """What a file's first bytes say it is (for clearer error messages), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
            return "an HEIF/AVIF image"
        if brand == b"M4A ":
            return "an M4A audio file"
        return "an MP4/MOV video"
    signatures = (
        (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"BM", "a BMP image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"ID3", "an MP3 audio file"),
        (b"OggS", "an Ogg file"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive"),
    )
    for magic, what in signatures:
        if head.startswith(magic):
            return what
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"AVI ": "an AVI video", b"WAVE": "a WAV audio file", b"WEBP": "a WebP image"}.get(
            head[8:12]
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "text"
    return None
