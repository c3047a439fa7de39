"""Synthetic street-like media for the demo and the tests.

Videos show a textured street (sky, skyline, sidewalk, road with lane markings) seen from a
panning camera, with cars and pedestrians moving across it and a little sensor noise, so
consecutive frames differ. `scene` picks the lighting and weather (day, dusk, night, rain, fog,
snow) and the layout, so different videos land in different parts of an embedding space.
Everything is drawn with vectorised numpy: 300 frames at 320x180 (drawn and encoded with
libx264 ultrafast) take about half a second.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from winnow.storage import ObjectStore

# name, sky top, sky bottom, building base colour, road colour, gain, tint, fog, weather
_LOOKS: tuple[tuple[str, tuple, tuple, tuple, tuple, float, tuple, float, str], ...] = (
    ("day", (90, 150, 230), (185, 215, 245), (150, 140, 130), (95, 95, 100), 1.0, (0, 0, 0), 0.0, ""),
    ("dusk", (60, 40, 110), (250, 140, 80), (110, 80, 90), (80, 70, 75), 0.75, (25, 5, -15), 0.0, ""),
    ("night", (5, 8, 25), (20, 30, 60), (40, 40, 55), (35, 35, 40), 0.35, (-5, 0, 15), 0.0, ""),
    ("rain", (110, 115, 125), (150, 155, 160), (105, 105, 110), (55, 58, 65), 0.8, (-5, 0, 10), 0.15, "rain"),
    ("fog", (190, 190, 190), (205, 205, 205), (140, 140, 140), (120, 120, 120), 0.95, (0, 0, 0), 0.55, ""),
    ("snow", (170, 175, 190), (215, 220, 230), (120, 110, 115), (225, 228, 235), 1.05, (0, 0, 8), 0.1, "snow"),
)  # fmt: skip

_CAR_COLOURS = np.array(
    [(200, 30, 30), (30, 60, 200), (230, 230, 230), (20, 20, 20), (240, 200, 30), (40, 150, 60)],
    np.float32,
)


@dataclass
class _Actor:
    x0: float  # position at t=0 (px)
    speed: float  # px per frame (negative: right to left)
    y: int  # bottom edge (px)
    w: int
    h: int
    colour: np.ndarray  # (3,) float32
    car: bool


@dataclass
class _Scene:
    width: int
    height: int
    background: np.ndarray  # (H, 3W, 3) float32, panned through
    pan_speed: float
    actors: list[_Actor]
    gain: float
    tint: np.ndarray
    fog: float
    fog_colour: np.ndarray
    weather: str
    weather_mask: np.ndarray  # (H, W) float32 streaks/flakes, rolled over time
    noise: np.ndarray  # (4, H, W, 3) float32 sensor noise bank
    night: bool


def _build_scene(*, width: int, height: int, seed: int, scene: int) -> _Scene:
    """Precompute everything that does not change from frame to frame."""
    name, sky_top, sky_bot, building, road, gain, tint, fog, weather = _LOOKS[scene % len(_LOOKS)]
    rng = np.random.default_rng([seed, scene])
    h, w = height, width
    big_w = 3 * w
    horizon = int(h * rng.uniform(0.38, 0.52))
    walk_top = horizon + max(2, int(h * 0.06))
    road_top = walk_top + max(2, int(h * 0.07))

    bg = np.empty((h, big_w, 3), np.float32)
    # Algorithm: sky is a vertical gradient; skyline is random-width blocks of random height with
    # a window grid; sidewalk and road are bands; lane dashes repeat along the road.
    ramp = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    bg[:horizon] = (np.float32(sky_top) * (1 - ramp) + np.float32(sky_bot) * ramp)[:, None, :]
    x = 0
    while x < big_w:
        bw = int(rng.integers(max(4, w // 12), max(6, w // 4)))
        bh = int(horizon * rng.uniform(0.25, 0.95))
        shade = np.float32(building) * np.float32(rng.uniform(0.7, 1.25, 3))
        bg[horizon - bh : horizon, x : x + bw] = shade
        lit = np.float32((250, 230, 150)) if name == "night" else shade * 0.55
        win = bg[horizon - bh + 2 : horizon - 2, x + 2 : x + bw - 2]
        win[::4, ::3] = lit if name != "night" else np.where(rng.random(3) > 0.4, 1.0, 0.2) * lit
        x += bw + int(rng.integers(0, max(2, w // 30)))
    bg[horizon:walk_top] = np.float32((150, 150, 145))
    bg[walk_top:road_top] = np.float32((170, 165, 160))
    bg[road_top:] = np.float32(road)
    lane_y = (road_top + h) // 2
    dash = max(4, w // 16)
    lanes = bg[lane_y : lane_y + max(1, h // 90) + 1]
    for x in range(0, big_w, 2 * dash):
        lanes[:, x : x + dash] = (235, 235, 220) if name != "snow" else (150, 150, 150)
    bg += rng.normal(0.0, 9.0, (h, big_w, 1)).astype(np.float32)  # texture (asphalt, brick)

    actors = []
    for _ in range(int(rng.integers(3, 6))):  # cars on two lanes
        upper = bool(rng.random() < 0.5)
        cw, ch = int(w * rng.uniform(0.12, 0.22)), int(h * rng.uniform(0.09, 0.14))
        y = (lane_y - 1) if upper else h - int(rng.integers(1, max(2, h // 20)))
        speed = float(rng.uniform(1.0, 3.5)) * w / 160 * (1 if upper else -1)
        colour = _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))]
        actors.append(_Actor(float(rng.uniform(0, w)), speed, y, cw, ch, colour, True))
    for _ in range(int(rng.integers(2, 5))):  # pedestrians on the sidewalk
        pw, ph = max(2, w // 60), max(6, int(h * rng.uniform(0.10, 0.16)))
        speed = float(rng.uniform(0.2, 0.7)) * w / 160 * (1 if rng.random() < 0.5 else -1)
        colour = np.float32(rng.integers(20, 235, 3))
        actors.append(_Actor(float(rng.uniform(0, w)), speed, road_top - 1, pw, ph, colour, False))

    mask = np.zeros((h, w), np.float32)
    if weather == "rain":
        drops = rng.random((h, w)) < 0.012
        for k in range(max(2, h // 30)):  # streaks: drops smeared downwards
            mask += np.roll(drops, k, axis=0)
    elif weather == "snow":
        mask += rng.random((h, w)) < 0.006
    return _Scene(
        width=w,
        height=h,
        background=bg,
        pan_speed=float(rng.uniform(0.5, 2.0)) * w / 160,
        actors=actors,
        gain=gain * float(rng.uniform(0.9, 1.1)),
        tint=np.float32(tint),
        fog=fog,
        fog_colour=np.float32((200, 200, 205)),
        weather=weather,
        weather_mask=np.clip(mask, 0, 1),
        noise=rng.normal(0.0, 3.0, (4, h, w, 3)).astype(np.float32),
        night=name == "night",
    )


def _render(sc: _Scene, t: int) -> np.ndarray:
    """Frame `t` of a scene as RGB uint8 (H, W, 3)."""
    h, w = sc.height, sc.width
    off = int(t * sc.pan_speed) % (2 * w)
    frame = sc.background[:, off : off + w].copy()
    lights: list[tuple[int, int, int, int]] = []
    for a in sc.actors:
        period = w + a.w
        left = int((a.x0 + a.speed * t) % period) - a.w
        x0, x1 = max(left, 0), min(left + a.w, w)
        if x1 <= x0:
            continue
        top = max(a.y - a.h, 0)
        if a.car:
            frame[top + a.h // 3 : a.y, x0:x1] = a.colour
            c0, c1 = max(x0, left + a.w // 4), min(x1, left + 3 * a.w // 4)
            if c1 > c0:
                frame[top : top + a.h // 3 + 1, c0:c1] = a.colour * 0.5 + 60
            wheel = max(1, a.h // 4)
            for wx in (left + a.w // 6, left + 4 * a.w // 6):
                if 0 < wx + wheel and wx < w:
                    frame[a.y - wheel : a.y, max(wx, 0) : min(wx + wheel, w)] = 15
            front = left + a.w - 2 if a.speed > 0 else left
            if 0 < front + 2 and front < w:
                lights.append((a.y - a.h // 2, a.y - a.h // 3, max(front, 0), min(front + 2, w)))
        else:
            frame[top + a.h // 4 : a.y, x0:x1] = a.colour
            head = frame[top : top + a.h // 4, x0:x1]
            head[...] = (224, 172, 140)
    frame *= sc.gain
    frame += sc.tint
    if sc.weather:
        roll = int(t * (3 if sc.weather == "rain" else 1))
        streaks = np.roll(sc.weather_mask, (roll % h, (t // 2) % w), axis=(0, 1))
        frame += streaks[..., None] * (90.0 if sc.weather == "rain" else 200.0)
    if sc.fog:
        frame += sc.fog * (sc.fog_colour - frame)
    for y0, y1, x0, x1 in lights:
        frame[y0:y1, x0:x1] = (255, 250, 200) if sc.night else (250, 240, 180)
    frame += sc.noise[t % len(sc.noise)]
    return np.clip(frame, 0, 255).astype(np.uint8)


def _codec_options(codec: str, gop: int | None) -> dict[str, str]:
    if codec in ("libx264", "libx265"):
        # Fast enough for tests; two B-frames so reordering (pts != dts) is always exercised.
        params = "bframes=2:b-adapt=0" if codec == "libx264" else "bframes=2"
        if gop is not None:
            params += f":keyint={gop}:min-keyint={gop}:scenecut=0"
        key = "x264-params" if codec == "libx264" else "x265-params"
        return {"preset": "ultrafast", key: params}
    if codec in ("libvpx", "libvpx-vp9"):
        opts = {"deadline": "realtime", "cpu-used": "8"}
        if gop is not None:
            opts["keyint_min"] = str(gop)
        return opts
    return {}


def make_video(
    path: Path,
    *,
    n_frames: int = 300,
    width: int = 320,
    height: int = 180,
    fps: int = 30,
    codec: str = "libx264",
    seed: int = 0,
    scene: int = 0,
    gop: int | None = None,
    rotation: int = 0,
    vfr: bool = False,
) -> None:
    """Write a synthetic street video.

    Args:
        path: Output file; the container follows the extension (`.mp4`, `.mkv`, `.webm`, ...).
        n_frames: Number of frames.
        width: Coded width in pixels (even for 4:2:0 codecs).
        height: Coded height in pixels (even for 4:2:0 codecs).
        fps: Nominal frame rate.
        codec: Encoder name (`libx264`, `mpeg4`, `libvpx-vp9`, ...).
        seed: Seed of the layout, the actors and the noise.
        scene: Look and layout (day, dusk, night, rain, fog, snow, then repeating with new
            layouts).
        gop: Keyframe interval in frames (scene-cut keyframes off); None for the encoder's default.
        rotation: Display rotation in degrees counter-clockwise (0, 90, 180, 270), stored as
            metadata; the coded pixels are not rotated.
        vfr: Variable frame rate: frame durations vary between 0.5 and 2 frame periods.

    Raises:
        ValueError: If the size is odd or `n_frames` is not positive.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for 4:2:0 video, got {width}x{height}")
    sc = _build_scene(width=width, height=height, seed=seed, scene=scene)
    container_options = (
        {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
    )
    # Time base: 1/(4*fps) lets VFR durations be multiples of a quarter period.
    tb = Fraction(1, 4 * fps)
    durations = (
        np.random.default_rng([seed, scene, 1]).choice([2, 3, 4, 6, 8], size=n_frames)
        if vfr
        else np.full(n_frames, 4)
    )
    pts = np.concatenate([[0], np.cumsum(durations)[:-1]])
    with av.open(str(path), "w", options=container_options) as container:
        stream = container.add_stream(codec, rate=fps, options=_codec_options(codec, gop))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = tb
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        for t in range(n_frames):
            frame = av.VideoFrame.from_ndarray(_render(sc, t), format="rgb24")
            frame.pts, frame.time_base = int(pts[t]), tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def make_image(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    seed: int = 0,
    scene: int = 0,
    fmt: str = "JPEG",
) -> None:
    """Write a synthetic street still.

    Args:
        path: Output file.
        width: Width in pixels.
        height: Height in pixels.
        seed: Seed of the layout and the moment shown.
        scene: Look and layout, as in `make_video`.
        fmt: Pillow format name (`JPEG`, `PNG`, `WEBP`, ...).
    """
    sc = _build_scene(width=width, height=height, seed=seed, scene=scene)
    t = int(np.random.default_rng([seed, scene, 2]).integers(0, 1000))
    Image.fromarray(_render(sc, t)).save(
        path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {})
    )


def write_demo_files(
    store: ObjectStore,
    *,
    n_videos: int = 4,
    n_images: int = 6,
    first: int = 0,
    seed: int = 0,
    frames_per_video: int = 300,
    width: int = 320,
    height: int = 180,
) -> list[str]:
    """Write a sample bucket of street videos and stills.

    File `i` (counting from `first`) gets scene `i`, so a second call with a higher `first`
    adds new files with new looks instead of overwriting the first ones.

    Args:
        store: Where the files go.
        n_videos: Number of videos (`cam<i % 2>/drive-<i>.mp4`).
        n_images: Number of JPEG stills (`stills/still-<i>.jpg`).
        first: Index of the first file.
        seed: Seed of every file's content.
        frames_per_video: Frames per video (30 fps).
        width: Width of videos and stills.
        height: Height of videos and stills.

    Returns:
        The keys written, videos first.
    """
    keys: list[str] = []
    with tempfile.TemporaryDirectory(prefix="winnow-demo-") as tmp:
        for i in range(first, first + n_videos):
            key = f"cam{i % 2}/drive-{i:04d}.mp4"
            local = Path(tmp) / f"v{i}.mp4"
            make_video(
                local,
                n_frames=frames_per_video,
                width=width,
                height=height,
                seed=seed * 7919 + i,
                scene=i,
            )
            store.put(key, local)
            keys.append(key)
        for i in range(first, first + n_images):
            key = f"stills/still-{i:04d}.jpg"
            local = Path(tmp) / f"s{i}.jpg"
            make_image(local, width=width, height=height, seed=seed * 7919 + 1000 + i, scene=i + 3)
            store.put(key, local)
            keys.append(key)
    return keys


def _audio_only_mp4(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        t = np.arange(16000, dtype=np.float32) / 16000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                tone[:, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_corrupt_files(store: ObjectStore, prefix: str = "broken") -> dict[str, str]:
    """Write media files that cannot be decoded (or hold no video), to exercise error handling.

    Every file written decodes to a `corrupt` or `skipped` result, never to frames.

    Args:
        store: Where the files go.
        prefix: Folder of the files.

    Returns:
        Key of each file -> what is wrong with it.
    """
    with tempfile.TemporaryDirectory(prefix="winnow-broken-") as tmp:
        plain = Path(tmp) / "plain.mp4"  # moov at the end: cutting the file loses the index
        with av.open(str(plain), "w") as container:
            stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
            sc = _build_scene(width=160, height=96, seed=0, scene=0)
            for t in range(30):
                container.mux(
                    stream.encode(av.VideoFrame.from_ndarray(_render(sc, t), format="rgb24"))
                )
            container.mux(stream.encode(None))
        video = plain.read_bytes()
        still = Path(tmp) / "still.jpg"
        make_image(still, width=160, height=96, seed=0, scene=1)
        jpeg = still.read_bytes()
        audio = Path(tmp) / "audio.mp4"
        _audio_only_mp4(audio)
        files: dict[str, tuple[bytes, str]] = {
            "zero-byte.mp4": (b"", "zero-byte file"),
            "truncated.mp4": (
                video[: len(video) // 2],
                "truncated MP4: second half (and its moov index) cut off",
            ),
            "garbage.mov": (np.random.default_rng(0).bytes(4096), "random bytes named .mov"),
            "notes.jpg": (b"camera 3 was offline on this day\n" * 20, "text file named .jpg"),
            "clip.jpg": (video, "MP4 video named .jpg"),
            "photo.mp4": (jpeg, "JPEG image named .mp4"),
            "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
            "audio-only.mp4": (audio.read_bytes(), "audio-only MP4 (no video stream)"),
        }
    out: dict[str, str] = {}
    for name, (data, what) in files.items():
        key = f"{prefix}/{name}" if prefix else name
        store.put(key, data)
        out[key] = what
    return out
