"""Write a run's selection to the output store: frames, exports, embedding plot and report.

Layout under the output root (nothing is written anywhere else; the source is only read):
```
frames/<key without extension>-<frame index>-<extension>.png   selected video frames, full size
clips/<key without extension>-<start ms>-<end ms>-<extension>.mp4   picked clips (unit: clip)
tags/<tag>/filenames.txt      one exported name per sample (frame PNG name, or the image's key)
tags/<tag>/samples.csv        metadata, pick distance and reason, link and embedding per sample
tags/<tag>/labelstudio.json   Label Studio import tasks (`image`: local-files URL or s3://)
tags/<tag>/members.csv        one plain row per member: ids, key, frame, time, name, size, stats
tags/<tag>/members.parquet    the same columns and the embedding (fixed-size float32 list)
tags/<tag>/embedding.png      2-D PCA projection: dataset grey, picks in colour, the rest faint
tags/<tag>/report.html        self-contained HTML report of the run
tags/<tag>/clips.csv          picked clips (unit: clip): file, start, end, clip, frames, mode
tags/<tag>/labelstudio_clips.json   Label Studio video tasks of the picked clips
```
The `tags/<tag>/` files are written to the run's staging folder in the pool first and copied
here once the tag's commit has landed (`_publish.py`): a run that loses the commit race never
overwrites the winner's.
Frame names follow the reference product (Lightly Worker) so that downstream tools carry over:
the frame index is zero-padded to the number of digits of the video's frame count, e.g. frame 99
of a 1,200-frame `cam1/drive.mp4` is `frames/cam1/drive-0099-mp4.png`. Images are referenced in
place (no copy). Every write replaces the same names, so a re-run is idempotent.

One module a concern:
```
_names.py     frame_name, export_name, tag_keys: every name in the output store
_frames.py    picked video frames re-decoded at full size, PNG encoding, report thumbnails
_clips.py     clip_name, cut_clip (MP4 by stream copy or re-encode), clips.csv, Label Studio video tasks, strips
_exports.py   filenames.txt, samples.csv, labelstudio.json, members.csv/.parquet, COCO
_objects.py   objects: Label Studio pre-annotations and config, COCO JSON, objects.csv, cards
_plot.py      render_embedding_plot: the 2-D PCA picture
_report.py    render_report: the HTML report and its sections
_upload.py    upload_selection: all of the above for one tag, and what it wrote (Exported)
_publish.py   tag files staged per run, published under tags/<tag>/ once the commit landed
```
"""

from winnow.outputs._exports import (
    EXPORT_FORMATS,
    LABELSTUDIO_LOCAL_FILES,
    MEMBERS_COLUMNS,
    SAMPLES_CSV_COLUMNS,
    export_tag,
    labelstudio_image,
)
from winnow.outputs._frames import PNG_COMPRESS_LEVEL, REPORT_THUMBNAILS, THUMBNAIL_PX
from winnow.outputs._names import (
    EXPORT_FILES,
    FRAMES_PREFIX,
    TAGS_PREFIX,
    export_name,
    frame_name,
    tag_keys,
)
from winnow.outputs._objects import (
    BOX_COLOUR,
    OBJECTS_CSV_COLUMNS,
    coco_json,
    labelstudio_labels_config,
    labelstudio_predictions,
    object_card_png,
    objects_csv,
)
from winnow.outputs._plot import MAX_PLOT_POINTS, render_embedding_plot
from winnow.outputs._publish import (
    EXPORT_STAGING,
    publish_exports,
    staged_exports,
    staged_runs,
    unpublished_exports,
)
from winnow.outputs._report import links_note, render_report
from winnow.outputs._upload import Exported, upload_selection

__all__ = [
    "BOX_COLOUR",
    "EXPORT_FILES",
    "EXPORT_STAGING",
    "EXPORT_FORMATS",
    "FRAMES_PREFIX",
    "LABELSTUDIO_LOCAL_FILES",
    "MEMBERS_COLUMNS",
    "MAX_PLOT_POINTS",
    "OBJECTS_CSV_COLUMNS",
    "PNG_COMPRESS_LEVEL",
    "REPORT_THUMBNAILS",
    "SAMPLES_CSV_COLUMNS",
    "TAGS_PREFIX",
    "THUMBNAIL_PX",
    "Exported",
    "coco_json",
    "export_name",
    "export_tag",
    "frame_name",
    "labelstudio_image",
    "labelstudio_labels_config",
    "labelstudio_predictions",
    "object_card_png",
    "objects_csv",
    "publish_exports",
    "render_embedding_plot",
    "links_note",
    "render_report",
    "staged_exports",
    "staged_runs",
    "tag_keys",
    "unpublished_exports",
    "upload_selection",
]
