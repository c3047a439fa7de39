"""The run summary: one record of what a run did, rendered as CLI text, markdown and HTML.

Every rendering takes its rows from `summary_rows`, its numbers from `fmt_number` (coverage
radii from `fmt_coverage`) and shows keys through `visible`, so the terminal, the log, the
Prefect UI's markdown artifact and the HTML report always say the same thing, the same way.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from winnow.records import FileResult, ModelRecord, Selection, TagRecord, total_rejected

if TYPE_CHECKING:
    from collections.abc import Sequence

    from winnow.discover import Discovery
    from winnow.outputs import Exported
    from winnow.rebase import Rebased

CORRUPT_LISTED = 100  # (key, reason) pairs kept in the summary; the pool has every file

# Control characters (C0, DEL, C1) and the invisible marks that reorder or hide text (bidi
# controls, Trojan-Source style): a key holding them would split a line, ring a bell or show
# other text than it is.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    r"""Text from data (a key, a reason) for people: control and bidi characters escaped.

    `\n`, `\r`, `\t`, else `\xNN` or `\uNNNN`, so the text stays on one line and shows what it
    holds. Data files keep the exact text (quoted as their format requires).
    """
    return _INVISIBLE.sub(
        lambda m: _NAMED.get(
            c := m.group(), f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
        ),
        text,
    )


def fmt_reasons(counts: dict[str, int]) -> str:
    """Counts by reason on one line, reasons in order: `dark 3, letterbox 1`."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A number for people: fixed digits, `n/a` for missing or NaN, `∞` for infinity."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


@dataclass
class RunSummary:
    """What one run did: returned by the flow, shown in the terminal, the UI and the report.

    Attributes:
        run_id: The run's id (the Prefect flow run id, or a local uuid).
        source: URL of the raw data.
        output: URL of the output prefix.
        pool_version_before: Datapool version the run started from (0 for an empty pool).
        pool_version_after: Version the run committed, or None if it committed nothing.
        tag: Name of the tag the run registered, or None.
        parent_tag: The previous tag, or None.
        nothing_new: True when discovery found no new file (the run did no work).
        files_listed: Media files listed in the source (after `relevant_filenames`).
        files_new: Files new or changed since the last run.
        files_known: Files skipped because the pool already holds them unchanged.
        files_ignored: Objects in the source ignored as not media (by extension).
        ignored_examples: A few of their keys, so a user who expected them sees which.
        files_ok: New files decoded successfully.
        files_corrupt: New files that could not be decoded.
        files_skipped: New files decoded to no usable frame.
        corrupt: (key, reason) for corrupt and skipped files (at most `CORRUPT_LISTED`).
        video_frames: Video frames (decoded, kept for the model, skipped as unchanged) when a
            rule decided while decoding (`frames.min_change`, shots, `frames.quality`), else
            None.
        quality_rejects: Reason → frames dropped by `frames.quality` before the model.
        shots: Shots found in the run's videos (None when shots were not looked for).
        objects: Objects cut from the run's frames (None when the run had no predictions).
        objects_skipped: Reason → predicted boxes (or rows) not used: unreadable rows, unknown
            files or classes, boxes outside the frame, too small, on frames not sampled.
        shards: Shards of decode+embed work planned.
        shards_resumed: Shards reused from an interrupted earlier attempt (staged).
        commit_attempts: Datapool commits tried (0 when nothing was committed, 1 normally; each
            lost race adds one: the run rebased onto the winner and selected again).
        scaled_out: What the GPU pool's child runs or the Dask workers did, in one line (empty
            when the run decoded everything itself).
        decoded: False for a run whose candidates came from the pool (reselect): it listed and
            decoded nothing, so the file counts are left out of every rendering.
        candidates: Frames embedded in this run.
        dataset_samples: Samples in the dataset (union of tags) before the run.
        selected: Frames picked.
        selected_clips: Clips picked (`selection.unit: clip`; their frames are `selected`), or
            None when frames were the unit.
        selected_objects: Objects picked (`selection.unit: object`; their frames, each once,
            are `selected`), or None.
        removed_duplicates: Candidates dropped as exact or near duplicates.
        removed_thresholds: Candidates dropped by metadata thresholds.
        coverage_before: Coverage radius of the dataset over this run's candidates, before.
        coverage_after: The same, after adding the picks.
        mean_pick_distance: Mean distance of picks to the dataset before the run (with no
            dataset yet: to the nearest other pick).
        mean_random_distance: The same for a seeded random pick of the same size.
        stop_reason: Why selection stopped (`n_samples`, `proportion`, `min_distance`,
            `covered` when every candidate lies within δ of a pick or the dataset, `exhausted`).
        delta: Ball radius δ of the coverage strategy (chosen from the data or given); None
            when no coverage strategy ran.
        model: The embedding model, described.
        outputs: Name → URL of the exported files (report, embedding plot, lists).
        seconds: Stage name → wall-clock seconds.
        coverage_history: (tag, coverage before, coverage after) of every tag of the pool,
            oldest first, this run's tag last (non-finite values where there was no dataset).
    """

    run_id: str
    source: str
    output: str
    pool_version_before: int = 0
    pool_version_after: int | None = None
    tag: str | None = None
    parent_tag: str | None = None
    nothing_new: bool = False
    files_listed: int = 0
    files_new: int = 0
    files_known: int = 0
    files_ignored: int = 0
    ignored_examples: list[str] = field(default_factory=list)
    files_ok: int = 0
    files_corrupt: int = 0
    files_skipped: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    video_frames: tuple[int, int, int] | None = None
    quality_rejects: dict[str, int] = field(default_factory=dict)
    shots: int | None = None
    objects: int | None = None
    objects_skipped: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    shards_resumed: int = 0
    commit_attempts: int = 0
    scaled_out: str = ""
    decoded: bool = True
    candidates: int = 0
    dataset_samples: int = 0
    selected: int = 0
    selected_clips: int | None = None
    selected_objects: int | None = None
    removed_duplicates: int = 0
    removed_thresholds: int = 0
    coverage_before: float = float("nan")
    coverage_after: float = float("nan")
    mean_pick_distance: float = float("nan")
    mean_random_distance: float = float("nan")
    stop_reason: str = ""
    delta: float | None = None
    model: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    coverage_history: list[tuple[str, float, float]] = field(default_factory=list)
    pool_duplicates: int = 0
    pool_duplicate_examples: list[tuple[str, str, float]] = field(default_factory=list)

    def record_pool_duplicates(self, dropped: Sequence[Any]) -> None:
        """Candidates dropped as near duplicates of pool samples (`runs.PoolDuplicate`).

        The first `CORRUPT_LISTED` are kept as (candidate, nearest pool sample, distance), each
        sample as `key#frame`.
        """
        self.pool_duplicates = len(dropped)
        self.pool_duplicate_examples = [
            (f"{d.key}#{d.frame_index}", f"{d.nearest_key}#{d.nearest_frame_index}", d.distance)
            for d in list(dropped)[:CORRUPT_LISTED]
        ]

    def record_start(self, *, version: int, model: ModelRecord | None, seconds: float) -> None:
        """The pool version the run started from, its model, and how long starting took."""
        self.pool_version_before = version
        self.model = model.describe() if model else ""
        self.seconds["load"] = round(seconds, 3)

    def record_discovery(self, found: Discovery, *, seconds: float) -> None:
        """What discovery found (a run with no new file has nothing more to record)."""
        self.files_listed, self.files_known = found.listed, found.known
        self.files_ignored, self.ignored_examples = found.ignored, list(found.ignored_examples)
        self.files_new = len(found.new)
        self.nothing_new = not found.new
        self.seconds["discover"] = round(seconds, 3)

    def record_files(self, files: list[FileResult], *, shards: int, resumed: int) -> None:
        """Count the run's decoded, corrupt and skipped files and its shards."""
        self.shards, self.shards_resumed = shards, resumed
        self.files_ok = sum(f.status == "ok" for f in files)
        self.files_corrupt = sum(f.status == "corrupt" for f in files)
        self.files_skipped = sum(f.status == "skipped" for f in files)
        bad = [(f.key, f.error or "") for f in files if f.status != "ok"]
        self.corrupt = bad[:CORRUPT_LISTED]
        gated = [
            f
            for f in files
            if f.kind == "video" and (f.shots_detected or f.frames_unchanged or f.frames_rejected)
        ]
        if gated:
            videos = [f for f in files if f.kind == "video"]
            self.video_frames = (
                sum(f.frames_decoded for f in videos),
                sum(f.frames_sampled for f in videos),
                sum(f.frames_unchanged for f in videos),
            )
            self.quality_rejects = total_rejected(videos)
        shot_files = [f for f in files if f.shots_detected and f.status == "ok"]
        self.shots = sum(len(f.cuts) + 1 for f in shot_files) if shot_files else None
        if any(f.objects or f.objects_skipped for f in files):
            self.objects = sum(f.objects for f in files)
            for reason, n in total_rejected(files, "objects_skipped").items():
                self.objects_skipped[reason] = self.objects_skipped.get(reason, 0) + n

    def record_predictions(self, bad: dict[str, int]) -> None:
        """Count the rows of the predictions that could not be used, by reason."""
        self.objects = self.objects or 0
        for reason, n in bad.items():
            self.objects_skipped[reason] = self.objects_skipped.get(reason, 0) + n

    def record_selection(self, selection: Selection, *, dataset_samples: int) -> None:
        """Take the select stage's counts, coverage and distances."""
        self.dataset_samples = dataset_samples
        self.selected = len(selection.picks)
        self.selected_clips = len(selection.clips) if selection.clips else None
        self.selected_objects = len(selection.objects) if selection.objects else None
        self.removed_duplicates = selection.n_removed_duplicates
        self.removed_thresholds = selection.n_removed_thresholds
        self.coverage_before = selection.coverage_before
        self.coverage_after = selection.coverage_after
        self.mean_pick_distance = selection.mean_pick_distance
        self.mean_random_distance = selection.mean_random_distance
        self.stop_reason = selection.stop_reason
        self.delta = selection.delta

    def record_picks(
        self, selection: Selection, *, dataset_samples: int, base: Any, tag: str, seconds: float
    ) -> None:
        """A selection against the pool version `base` (a `PoolSnapshot`), for tag `tag`.

        After a lost race the run selects again: this replaces the earlier selection's record.
        """
        self.record_selection(selection, dataset_samples=dataset_samples)
        self.tag = tag if selection.picks else None
        self.parent_tag = base.latest_tag.name if base.latest_tag else None
        self.record_history(base.tags, tag=self.tag)
        self.outputs = {}
        self.seconds["select"] = round(seconds, 3)

    def record_exports(self, exported: Exported, *, seconds: float) -> None:
        """Where the upload wrote the tag's files."""
        self.outputs = dict(exported.links)
        self.seconds["upload"] = round(seconds, 3)

    def record_rebase(self, rebased: Rebased) -> None:
        """A lost race: the files the winner committed are known now, and no longer the run's."""
        self.files_new -= len(rebased.dropped_keys)
        self.files_known += len(rebased.dropped_keys)
        self.record_files(rebased.files, shards=self.shards, resumed=self.shards_resumed)
        self.candidates = len(rebased.candidates)

    def record_commit(self, version: int, *, attempts: int, seconds: float) -> None:
        """The version the run committed, after how many attempts (each lost race adds one)."""
        self.pool_version_after, self.commit_attempts = version, attempts
        self.seconds["register_tag"] = round(seconds, 3)

    def record_history(self, tags: list[TagRecord], *, tag: str | None) -> None:
        """The pool's coverage history: its tags before the run, then this run's `tag` if any."""
        self.coverage_history = [(t.name, t.coverage_before, t.coverage_after) for t in tags]
        if tag is not None:
            self.coverage_history.append((tag, self.coverage_before, self.coverage_after))

    def counts(self) -> dict[str, int]:
        """The counts a tag keeps of its run."""
        names = ("files_new", "files_ok", "files_corrupt", "files_skipped", "candidates")
        return {**{k: getattr(self, k) for k in names}, "selected": self.selected}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (non-finite floats become None)."""
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        out["corrupt"] = [list(c) for c in self.corrupt]
        out["coverage_history"] = [
            [tag, *(v if math.isfinite(v) else None for v in (before, after))]
            for tag, before, after in self.coverage_history
        ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """The inverse of `to_dict` (missing numbers come back as NaN)."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for k, v in values.items():
            if v is None and names[k].type == "float":
                values[k] = float("nan")
        values["corrupt"] = [tuple(c) for c in values.get("corrupt", [])]
        if values.get("video_frames") is not None:
            values["video_frames"] = tuple(values["video_frames"])
        values["coverage_history"] = [
            (tag, *(float("nan") if v is None else float(v) for v in (before, after)))
            for tag, before, after in values.get("coverage_history", [])
        ]
        return cls(**values)


@dataclass(frozen=True)
class Row:
    """One line of the summary: a label and its value, in one of two groups."""

    group: str  # "files" or "selection"
    label: str
    value: str


def summary_rows(summary: RunSummary) -> list[Row]:
    """The rows every rendering shows, in order (values as plain text)."""
    s = summary
    against = "the dataset" if s.dataset_samples else "the nearest other pick (no dataset yet)"
    files = [
        ("files listed", s.files_listed),
        ("new or changed", s.files_new),
        ("already in the pool", s.files_known),
        ("ignored (not media)", _ignored(s)),
        ("decoded", s.files_ok),
        ("corrupt", s.files_corrupt),
        ("skipped", s.files_skipped),
        *(
            [
                (
                    "video frames decoded / kept / skipped as unchanged",
                    " / ".join(map(str, s.video_frames)),
                )
            ]
            if s.video_frames
            else []
        ),
        *(
            [
                (
                    "frames dropped by quality (before the model)",
                    fmt_reasons(s.quality_rejects),
                )
            ]
            if s.quality_rejects
            else []
        ),
        *([("shots found", s.shots)] if s.shots is not None else []),
        *([("objects (boxes cut from frames)", s.objects)] if s.objects is not None else []),
        *(
            [
                (
                    "boxes not used",
                    fmt_reasons(s.objects_skipped),
                )
            ]
            if s.objects_skipped
            else []
        ),
        ("shards (reused from an interrupted attempt)", f"{s.shards} ({s.shards_resumed})"),
        *([("decoded and embedded by", s.scaled_out)] if s.scaled_out else []),
        # Shown only after a lost race (the run rebased onto the winner and selected again).
        *(
            [("commit attempts (lost races)", f"{s.commit_attempts} ({s.commit_attempts - 1})")]
            if s.commit_attempts > 1
            else []
        ),
    ]
    if not s.decoded:
        files = []
    selection = [
        ("candidates (frames)" if s.decoded else "candidates (pool samples)", s.candidates),
        ("dataset before the run (samples)", s.dataset_samples),
        ("duplicates removed", s.removed_duplicates),
        *(
            [
                (
                    "of which near duplicates of pool samples (nearest)",
                    f"{s.pool_duplicates}: "
                    + ", ".join(f"{a} ~ {b} ({d:.3f})" for a, b, d in s.pool_duplicate_examples[:5])
                    + (" …" if s.pool_duplicates > 5 else ""),
                )
            ]
            if s.pool_duplicates
            else []
        ),
        ("removed by thresholds", s.removed_thresholds),
        (
            "selected",
            _selected(s),
        ),
        ("stopped by", s.stop_reason or "n/a"),
        *([("coverage ball radius δ", fmt_number(s.delta))] if s.delta is not None else []),
        (
            "coverage radius before → after",
            f"{fmt_coverage(s.coverage_before)} → {fmt_coverage(s.coverage_after)}"
            + ("" if _finite(s.coverage_before) else " (no dataset before the run)"),
        ),
        (f"mean distance of picks to {against}", fmt_number(s.mean_pick_distance)),
        ("the same for random picks (baseline)", fmt_number(s.mean_random_distance)),
    ]
    return [Row("files", k, str(v)) for k, v in files] + [
        Row("selection", k, str(v)) for k, v in selection
    ]


def _selected(s: RunSummary) -> str | int:
    """Frames picked, and the clips or objects they came from."""
    if s.selected_clips is not None:
        return f"{s.selected} ({s.selected_clips} clips)"
    if s.selected_objects is not None:
        return f"{s.selected} frames ({s.selected_objects} objects)"
    return s.selected


def _ignored(summary: RunSummary) -> str:
    """The ignored count with a few example keys, e.g. `2 (notes.txt, clip.mts)`."""
    shown = summary.ignored_examples
    if not summary.files_ignored or not shown:
        return str(summary.files_ignored)
    more = ", …" if summary.files_ignored > len(shown) else ""
    return f"{summary.files_ignored} ({', '.join(visible(k) for k in shown)}{more})"


def render_headline(summary: RunSummary) -> str:
    """The summary's first line: the tag, the pool versions and the model (or nothing new)."""
    if summary.nothing_new:
        ignored = (
            f"; {_ignored(summary)} objects ignored (not media)" if summary.files_ignored else ""
        )
        return (
            f"nothing new in {visible(summary.source)}: {summary.files_known} files already in "
            "the pool"
            f"{ignored}; no decoding, no embedding, no tag"
        )
    after = summary.pool_version_after
    versions = f"{summary.pool_version_before} → {after if after is not None else 'unchanged'}"
    tag = f"tag {summary.tag}" if summary.tag else "no tag (nothing selected)"
    return f"{tag}; datapool version {versions}; model {summary.model or 'n/a'}"


def _seconds(summary: RunSummary) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items())


def render_text(summary: RunSummary) -> str:
    """The summary for a terminal."""
    lines = [render_headline(summary)]
    if summary.nothing_new:
        return lines[0]
    width = max(len(r.label) for r in summary_rows(summary))
    lines += [f"  {r.label:<{width}}  {r.value}" for r in summary_rows(summary)]
    for key, reason in summary.corrupt[:10]:
        lines.append(f"  ! {visible(key)}: {visible(reason)}")
    if len(summary.corrupt) > 10:
        lines.append(f"  ! … {summary.files_corrupt + summary.files_skipped - 10} more")
    lines.append(f"outputs in {visible(summary.output)}")
    lines += [f"  {name}: {url}" for name, url in summary.outputs.items()]
    if summary.seconds:
        lines.append(f"stage seconds: {_seconds(summary)}")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text from data for a markdown table cell, in or out of a code span.

    Control characters are shown escaped (`visible`: a newline becomes a backslash and an `n`,
    which markdown leaves as they are); `|` would end the cell and `<` could start HTML.
    """
    return visible(text).replace("|", "\\|").replace("<", "&lt;")


SPARKS = "▁▂▃▄▅▆▇█"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def fmt_coverage(value: float | None) -> str:
    """A coverage radius for the history: 3 digits, `n/a` when not finite (no dataset yet)."""
    return fmt_number(value) if _finite(value) else "n/a"


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled between their min and max (`·` if not finite)."""
    finite = [v for v in values if _finite(v)]
    if not finite:
        return "·" * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    out = []
    for v in values:
        if not _finite(v):
            out.append("·")
        else:
            level = round((v - low) / span * (len(SPARKS) - 1)) if span else len(SPARKS) // 2
            out.append(SPARKS[level])
    return "".join(out)


def _history_markdown(history: list[tuple[str, float, float]]) -> list[str]:
    afters = [after for _, _, after in history]
    lines = [
        "",
        "### Coverage radius over the pool's versions",
        "",
        f"After each tag (lower is better): `{sparkline(afters)}` "
        f"{fmt_coverage(afters[0])} → {fmt_coverage(afters[-1])}",
        "",
        "| tag | before | after |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{_md(tag)}` | {fmt_coverage(before)} | {fmt_coverage(after)} |"
        for tag, before, after in history
    ]
    return lines


def render_markdown(summary: RunSummary) -> str:
    """The summary as markdown (the Prefect UI's summary artifact)."""
    if summary.nothing_new:
        return (
            f"## Nothing new\n\nNo new or changed media file in `{visible(summary.source)}` "
            f"({summary.files_known} files already in the pool"
            + (
                f"; {_md(_ignored(summary))} objects ignored, not media"
                if summary.files_ignored
                else ""
            )
            + "). No tag registered."
        )
    lines = [
        f"## Tag `{summary.tag}`" if summary.tag else "## No tag (nothing selected)",
        "",
        f"Source `{visible(summary.source)}` → output `{visible(summary.output)}`; "
        f"{_md(render_headline(summary))}.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {r.label} | {_md(r.value)} |" for r in summary_rows(summary)]
    if summary.outputs:
        links = " · ".join(f"[{k}]({v})" for k, v in summary.outputs.items())
        lines += ["", f"**Outputs:** {links}"]
    if summary.coverage_history:
        lines += _history_markdown(summary.coverage_history)
    if summary.corrupt:
        lines += ["", "### Corrupt or skipped files", "", "| file | reason |", "|---|---|"]
        lines += [f"| `{_md(k)}` | {_md(reason)} |" for k, reason in summary.corrupt]
    if summary.seconds:
        lines += ["", f"Stage seconds: {_seconds(summary)}"]
    return "\n".join(lines)


def _h(text: str) -> str:
    """Text from data for HTML: control characters shown escaped, then HTML-escaped."""
    return html.escape(visible(text), quote=True)


def _html_table(rows: list[tuple[str, str]], *, head: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append(f"<tr><th>{_h(head[0])}</th><th>{_h(head[1])}</th></tr>")
    out += [f'<tr><th>{_h(k)}</th><td class="n">{_h(v)}</td></tr>' for k, v in rows]
    out.append("</table>")
    return "\n".join(out)


def render_html(summary: RunSummary) -> str:
    """The summary's counts as HTML tables (a section of the report), every value escaped."""
    rows = summary_rows(summary)
    out = ['<h2>Counts</h2><div class="grid" style="gap:24px">']
    for group in ("files", "selection"):
        if shown := [(r.label, r.value) for r in rows if r.group == group]:
            out.append(_html_table(shown))
    if summary.seconds:
        timings = [(k, f"{v:.2f}") for k, v in summary.seconds.items()]
        timings.append(("total", f"{sum(summary.seconds.values()):.2f}"))
        out.append(_html_table(timings, head=("stage", "seconds")))
    out.append("</div>")
    return "\n".join(out)


def render_coverage_svg(
    history: list[tuple[str, float, float]], *, width: int = 520, height: int = 180
) -> str:
    """The coverage history as a small inline SVG line chart (no external assets).

    The solid line is the coverage radius after each tag, the dashed one before it; points that
    are not finite (no dataset yet) are left out and the line bridges them.

    Args:
        history: (tag, before, after) per tag, oldest first (`RunSummary.coverage_history`).
        width: Width of the chart in pixels.
        height: Height of the chart in pixels.

    Returns:
        An `<svg>` element, or an empty string when no value is finite.
    """
    values = [v for _, before, after in history for v in (before, after) if _finite(v)]
    if not values:
        return ""
    return _coverage_svg(history, values, width=width, height=height)


def _coverage_svg(
    history: list[tuple[str, float, float]], values: list[float], *, width: int, height: int
) -> str:
    left, right, top, bottom = 52, 12, 12, 34
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    step = (width - left - right) / max(len(history) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(history) > 1 else (width - left - right) / 2)

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * (height - top - bottom)

    def line(column: int, style: str) -> str:
        points = [(x(i), y(row[column])) for i, row in enumerate(history) if _finite(row[column])]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        dots = "".join(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5"/>' for px, py in points)
        return f'<g {style}><polyline fill="none" points="{path}"/>{dots}</g>'

    label_every = max(1, -(-len(history) // 8))  # at most ~8 tag labels
    labels = "".join(
        f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
        f"{html.escape(tag)}</text>"
        for i, (tag, _, _) in enumerate(history)
        if i % label_every == 0 or i == len(history) - 1
    )
    axis = (
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#bbb"/>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#bbb"/>'
        f'<text x="{left - 6}" y="{y(high) + 4:.1f}" text-anchor="end">{fmt_number(high)}</text>'
        f'<text x="{left - 6}" y="{y(low) + 4:.1f}" text-anchor="end">{fmt_number(low)}</text>'
    )
    title = "coverage radius before (dashed) and after (solid) each tag"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}" '
        'font-family="system-ui,sans-serif" font-size="11" fill="#444">'
        f"<title>{title}</title>{axis}"
        + line(1, 'stroke="#999" fill="#999" stroke-dasharray="4 3"')
        + line(2, 'stroke="#1f77b4" fill="#1f77b4" stroke-width="2"')
        + labels
        + "</svg>"
    )
