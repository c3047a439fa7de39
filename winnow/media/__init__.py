"""Decode images (Pillow) and sample video frames (PyAV) at model size, with per-frame metadata.

`decode_file` turns one file (an image, an animated GIF or a video) into `FrameBatch` chunks
followed by exactly one `FileResult`; it never raises for bad media. Frames are resized to the model's square input inside PyAV or
Pillow (never as full-size float tensors), rotation metadata is applied, and each frame gets
its presentation index, timestamp, brightness, contrast, sharpness and a content hash.
`extract_frames` re-decodes chosen frames at full resolution by seeking (for exports);
`probe_duration` reads a video's length from its header (for planning time ranges).

One module a concern:
```
_options.py   FrameOptions: how video frames are sampled
_decode.py    decode_file: picks the image or the video decoder for one file
_images.py    Pillow: load_image (full size) and images at the model's size; HEIC via pillow-heif
_animated.py  animated GIFs: frames sampled like a video's, picked frames at full size
_video.py     PyAV: sampling rules, packet index, timestamps, rotation, per-file results
_seeking.py   extract_frames: full-size frames found again by seeking
_stats.py     chunks of frames and their brightness, contrast, sharpness and hash
_sniff.py     what a file's first bytes say it is, and short failure reasons
```
"""

from winnow.media._decode import decode_file
from winnow.media._images import load_image
from winnow.media._options import FrameOptions, QualityRule
from winnow.media._seeking import extract_frames
from winnow.media._video import probe_duration

__all__ = [
    "FrameOptions",
    "QualityRule",
    "decode_file",
    "extract_frames",
    "load_image",
    "probe_duration",
]
