"""What reaches the model, decided while a video decodes: shots, change and quality.

`_Gate` sees every decoded frame of one video (for hard cuts) and every sampled frame (for
change and quality) in presentation order, in the decoder's thread, on small pictures only:

- **Shots**: PySceneDetect's content detector, on a 32x32 thumbnail. A frame's score is the
  mean absolute difference of hue, saturation and value (OpenCV's 8-bit HSV scales) to the
  previous frame; a frame scoring at least `shot_threshold` starts a shot unless a frame in
  the `MIN_SHOT_FRAMES` before it scored that high too (a dissolve or a burst of flashes is one
  cut, not one per frame). Its state is the last `MIN_SHOT_FRAMES` + 1 frames, so a time range
  of the video finds exactly the cuts of a whole-file decode after that many warm-up frames.
- **Change** (`min_change`): a sampled frame is kept if the mean absolute difference of its
  RGB thumbnail (0..1, every channel: a traffic light turning at constant brightness is a
  change, which luma alone missed in `bench/video_sampling.py`) to the last kept frame reaches
  `min_change`; the first frame of each
  `max_gap_seconds` window of the video is always kept. The reference resets at every window,
  so the decision depends only on the window's own frames: a time range decoded from its
  window's start decides as the whole file does. Motion vectors (PyAV's `export_mvs`) were
  the alternative; they exist only for some codecs (H.264, MPEG-4 part 2), not on intra
  frames, and miss changes of light, while a 32x32 thumbnail of a 320x180 frame costs about
  90 µs (and the shot detector's HSV of it about 130 µs more) on this machine.
- **Quality** (`quality`): dark, overexposed, low information, blurry and letterboxed frames
  are dropped before the model, counted per reason.
- **per_shot**: the first frame of every shot and the shot's next `per_shot - 1` sampled frames
  in the same window are kept whatever the other rules say.
"""

from __future__ import annotations

import bisect
import collections
from typing import Any

import numpy as np
from av.video.reformatter import VideoReformatter

from winnow.media._options import FrameOptions, QualityRule
from winnow.media._stats import _frame_stats, _rgb_luma

THUMB_PX = 32
MIN_SHOT_FRAMES = 15  # PySceneDetect's default min_scene_len
_BLACK = 0.08  # luma (0..1) at or below which an edge line counts as letterbox
_FLAT = 0.02  # largest luma standard deviation of a letterbox line


def _hsv(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit HSV of an RGB uint8 picture, as float32 (H 0..180, S and V 0..255)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    spread = v - x.min(axis=-1)
    s = np.where(v > 0, 255.0 * spread / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(spread, 1e-6)
    h = np.where(
        v == r,
        60.0 * (g - b) / safe,
        np.where(v == g, 120.0 + 60.0 * (b - r) / safe, 240.0 + 60.0 * (r - g) / safe),
    )
    h = np.where(spread > 0, np.mod(h, 360.0), 0.0) / 2.0
    return np.stack([h, s, v]).astype(np.float32)


def quality_scores(luma: np.ndarray, *, full_range: bool) -> dict[str, float]:
    """Brightness, sharpness, information (bits) and letterbox fraction of one luma plane.

    Args:
        luma: (S, S) uint8 luma of a model-size frame.
        full_range: True for 0..255 luma, False for limited-range (16..235) video.
    """
    offset, scale = (0.0, 1 / 255) if full_range else (16.0, 1 / 219)
    brightness, _, sharpness = _frame_stats(
        luma[None], np.array([offset], np.float32), np.array([scale], np.float32)
    )
    counts = np.bincount(luma.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / luma.size
    y = np.clip((luma.astype(np.float32) - offset) * scale, 0.0, 1.0)
    return {
        "brightness": float(brightness[0]),
        "sharpness": float(sharpness[0]),
        "information": float(-(p * np.log2(p)).sum()),
        "letterbox": _letterbox(y),
    }


def _letterbox(y: np.ndarray) -> float:
    """Fraction of the frame's area in dark uniform bars along its edges."""
    h, w = y.shape
    dark_rows = (y.max(axis=1) <= _BLACK) & (y.std(axis=1) <= _FLAT)
    dark_cols = (y.max(axis=0) <= _BLACK) & (y.std(axis=0) <= _FLAT)

    def run(flags: np.ndarray) -> int:
        """Length of the leading run of True."""
        off = np.flatnonzero(~flags)
        return int(off[0]) if len(off) else len(flags)

    top, bottom = run(dark_rows), run(dark_rows[::-1])
    left, right = run(dark_cols), run(dark_cols[::-1])
    if top + bottom >= h or left + right >= w:
        return 1.0
    return 1.0 - (h - top - bottom) * (w - left - right) / (h * w)


def quality_reason(rule: QualityRule, scores: dict[str, float]) -> str | None:
    """The first check a frame fails (`dark`, `overexposed`, ...), or None when it passes."""
    checks = (
        ("dark", rule.dark is not None and scores["brightness"] < rule.dark),
        ("overexposed", rule.overexposed is not None and scores["brightness"] > rule.overexposed),
        ("letterbox", rule.letterbox is not None and scores["letterbox"] > rule.letterbox),
        (
            "low_information",
            rule.low_information is not None and scores["information"] < rule.low_information,
        ),
        ("blurry", rule.blurry is not None and scores["sharpness"] < rule.blurry),
    )
    return next((name for name, failed in checks if failed), None)


class _Gate:
    """The change, shot and quality state of one video's decode (see the module docstring).

    Attributes:
        cuts: (frame index, seconds) of each detected cut, in order.
        unchanged: Sampled frames skipped as unchanged.
        rejected: Sampled frames dropped by the quality rule, per reason.
        decoded: Frames decoded in this decode's own span (not warm-up frames).
        emit: False while warming up (frames before a time range): state changes, nothing is
            counted or recorded.
    """

    def __init__(self, options: FrameOptions, origin: float) -> None:
        self.options = options
        self.origin = origin
        self.emit = True
        self.cuts: list[tuple[int, float]] = []
        self.unchanged = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.decoded = 0
        self._thumbs = VideoReformatter()
        self._prev_hsv: np.ndarray | None = None
        self._hot: collections.deque[int] = collections.deque()  # recent frames scoring high
        self._ref: np.ndarray | None = None  # RGB thumbnail (0..1) of the last kept frame
        self._ref_window = -1
        self._forced_left = 0
        self._forced_window = -1
        self._thumb: np.ndarray | None = None  # this frame's RGB thumbnail, once made
        self._scaled: np.ndarray | None = None  # the same in 0..1 (float32), once made

    def window(self, seconds: float) -> int:
        """The `max_gap_seconds` window a frame falls in."""
        return int(np.floor((seconds - self.origin) / self.options.max_gap_seconds + 1e-9))

    def _thumbnail(self, frame: Any) -> np.ndarray:
        if self._thumb is None:
            small = self._thumbs.reformat(
                frame, width=THUMB_PX, height=THUMB_PX, format="rgb24", interpolation="AREA"
            )
            self._thumb = small.to_ndarray()
        return self._thumb

    def _scaled_thumbnail(self, frame: Any) -> np.ndarray:
        if self._scaled is None:
            self._scaled = self._thumbnail(frame).astype(np.float32) / 255
        return self._scaled

    def see(self, frame: Any, index: int, seconds: float) -> bool:
        """Look at a decoded frame (every one, in order); True if it starts a new shot."""
        self._thumb = self._scaled = None
        if self.emit:
            self.decoded += 1
        if not self.options.shots:
            return False
        hsv = _hsv(self._thumbnail(frame))
        prev, self._prev_hsv = self._prev_hsv, hsv
        if prev is None:
            return False
        score = float(np.abs(hsv - prev).mean())
        while self._hot and self._hot[0] < index - MIN_SHOT_FRAMES:
            self._hot.popleft()
        if score < self.options.shot_threshold:
            return False
        quiet = not self._hot
        self._hot.append(index)
        if not quiet:
            return False
        if self.emit:
            self.cuts.append((index, seconds))
        if self.options.per_shot is not None:
            self._forced_left, self._forced_window = self.options.per_shot, self.window(seconds)
        return True

    def forced(self, seconds: float, *, cut: bool, candidate: bool) -> bool:
        """Whether `per_shot` keeps this frame whatever the other rules say."""
        if self._forced_left <= 0 or self._forced_window != self.window(seconds):
            return False
        if not (cut or candidate):
            return False
        self._forced_left -= 1
        return True

    def changed(self, frame: Any, seconds: float) -> bool:
        """Whether a sampled frame differs enough from the last kept one (counts the others)."""
        if self.options.min_change is None:
            return True
        if self._ref is not None and self._ref_window == self.window(seconds):
            diff = np.abs(self._scaled_thumbnail(frame) - self._ref)
            if float(diff.mean()) < self.options.min_change:
                if self.emit:
                    self.unchanged += 1
                return False
        return True  # changed enough, or the first frame of its window

    def quality_ok(self, converted: dict[str, Any]) -> bool:
        """Whether a converted frame passes the quality rule (counts the others by reason)."""
        rule = self.options.quality
        if rule is None:
            return True
        luma, full_range = converted["luma"], converted["full_range"]
        if luma is None:
            luma, full_range = _rgb_luma(converted["rgb"]), True  # as the `brightness` column
        reason = quality_reason(rule, quality_scores(luma, full_range=full_range))
        if reason is None:
            return True
        if self.emit:
            self.rejected[reason] += 1
        return False

    def kept(self, frame: Any, seconds: float) -> None:
        """Note a frame that goes to the model (the reference for the change rule)."""
        if self.options.min_change is not None:
            self._ref = self._scaled_thumbnail(frame)
            self._ref_window = self.window(seconds)

    def warmup_start(self, seconds: list[float], first: int) -> int:
        """The frame a time range starting at frame `first` must be decoded from.

        Far enough back that the state on reaching `first` is the whole-file decode's: the
        start of the frame's window for change and `per_shot`, and `MIN_SHOT_FRAMES` + 1
        frames before that for shots.
        """
        start = first
        if self.options.min_change is not None or self.options.per_shot is not None:
            start = bisect.bisect_left(seconds, self.window(seconds[first]), key=self.window)
        if self.options.shots:
            start -= MIN_SHOT_FRAMES + 1
        return max(start, 0)
