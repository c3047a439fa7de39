"""The run's self-contained HTML report: header, counts, plot, picks, problems and outputs."""

from __future__ import annotations

import base64
import html
import math
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from winnow.outputs._frames import REPORT_THUMBNAILS
from winnow.outputs._names import FRAMES_PREFIX
from winnow.summary import (
    RunSummary,
    fmt_coverage,
    fmt_number,
    render_coverage_svg,
    render_html,
    visible,
)

_SAFE_URL_RE = re.compile(r"^(https?|file|s3)://", re.IGNORECASE)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}.muted{color:#666}code{font:12px ui-monospace,Menlo,Consolas,monospace;
word-break:break-all}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.n{text-align:right;
font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}.card{width:150px;border:1px solid #ddd;
border-radius:4px;padding:6px;font-size:12px;background:#fafafa}
.card img{display:block;max-width:138px;max-height:138px;margin:0 auto 4px}
.nb{display:flex;gap:3px;margin-top:4px}.nb figure{margin:0;width:44px;font-size:10px;
text-align:center;color:#666}.nb img{width:44px;height:44px;object-fit:cover;margin:0}
.nb .none{width:44px;height:44px;font-size:9px}
.card .none{height:80px;display:flex;align-items:center;justify-content:center;color:#999;
background:#eee;margin-bottom:4px}
.plot img{max-width:100%;border:1px solid #ddd}.warn{color:#a33}
.objects{display:flex;flex-wrap:wrap;gap:10px}.object{border:1px solid #ddd;border-radius:4px;
padding:6px;font-size:12px;background:#fafafa;max-width:100%}
.object img{display:block;max-width:100%;margin-bottom:4px}
.object .none{width:160px;height:80px;display:flex;align-items:center;justify-content:center;
color:#999;background:#eee;margin-bottom:4px}
"""


def _e(value: Any) -> str:
    """Any value from data (keys, reasons, URLs) for text or attributes, HTML-escaped.

    Control characters are shown escaped first (`summary.visible`).
    """
    return html.escape(visible(str(value)), quote=True)


def _link(url: str, text: str) -> str:
    """A link to `url` if it is a web, file or bucket URL, else just the text (no `javascript:`)."""
    if url and _SAFE_URL_RE.match(url):
        return f'<a href="{_e(url)}">{_e(text)}</a>'
    return _e(text)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def render_report(
    *,
    summary: RunSummary,
    picks: list[dict],
    plot_png: bytes | None,
    clips: list[dict] | None = None,
    objects: list[dict] | None = None,
) -> str:
    """Render the run's self-contained HTML report.

    Everything taken from data (keys, reasons, URLs, model and store names) is HTML-escaped;
    links are only made from `http(s)://`, `file://` and `s3://` URLs. Images are embedded as
    data URIs, so the file can be opened anywhere without the output store.

    Args:
        summary: The run summary (counts, coverage, timings, corrupt files, `outputs`).
        picks: One dict per pick in pick order, with keys `key`, `frame_index`, `distance`,
            `reason` and optionally `kind`, `filename`, `url`, `thumbnail` (JPEG bytes) and
            `error` (why the frame could not be exported).
        plot_png: The embedding plot to embed, or None.
        clips: One dict per picked clip (`unit: clip`): `file`, `start_s`, `end_s`, `clip`,
            `frames`, `mode`, `reason`, `url`, `strip` (JPEG bytes) and `error`.
        objects: One dict per picked object (`unit: object`), in pick order: `object_id`,
            `key`, `frame_index`, `label`, `score` (NaN: unknown), `box` (x, y, w, h pixels),
            `reason` and `card_png` (PNG bytes from `object_card_png`, or None).

    Returns:
        The HTML document.
    """
    title = f"Winnow — tag {summary.tag}" if summary.tag else "Winnow — run report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">run <code>{_e(summary.run_id)}</code> · source '
        f"<code>{_e(summary.source)}</code> → output <code>{_e(summary.output)}</code>"
        + (f" · parent tag <code>{_e(summary.parent_tag)}</code>" if summary.parent_tag else "")
        + f" · datapool version {_e(summary.pool_version_before)} → "
        + _e(summary.pool_version_after or summary.pool_version_before + 1)
        + (f" · model {_e(summary.model)}" if summary.model else "")
        + "</p>",
    ]
    parts.append(render_html(summary))
    parts += _report_coverage(summary)
    parts += _report_plot(summary, plot_png)
    parts += _report_clips(clips or [])
    parts += _report_objects(objects or [])
    parts += _report_picks(picks, summary.selected or len(picks))
    parts += _report_problems(summary, picks)
    parts += _report_outputs(summary, picks)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _report_coverage(summary: RunSummary) -> list[str]:
    history = summary.coverage_history
    if not history:
        return []
    first, last = history[0], history[-1]
    after = [f"After <code>{_e(first[0])}</code>: {_e(fmt_coverage(first[2]))}"]
    if len(history) > 1:
        after.append(f"after <code>{_e(last[0])}</code>: {_e(fmt_coverage(last[2]))}")
    # One tag is one point: a chart needs two (the numbers above say it all).
    chart = render_coverage_svg(history) if len(history) > 1 else ""
    return [
        "<h2>Coverage over the pool's versions</h2>",
        '<p class="muted">Per tag, the coverage radius of its run: the largest distance from '
        "a frame of that run to the dataset, before (dashed) and after (solid) adding the "
        f"tag's picks; lower is better. {'; '.join(after)}.</p>",
        *([f'<div class="chart">{chart}</div>'] if chart else []),
    ]


def _report_plot(summary: RunSummary, plot_png: bytes | None) -> list[str]:
    if plot_png is None:
        return []
    img = f'<img alt="embedding plot" src="{_data_uri("image/png", plot_png)}">'
    url = summary.outputs.get("embedding_plot", "")
    body = f'<a href="{_e(url)}">{img}</a>' if url and _SAFE_URL_RE.match(url) else img
    return [
        "<h2>Embedding space</h2>",
        '<p class="muted">2-D PCA projection: the dataset before this run in grey, this '
        "run's picks in colour, its other candidates faint.</p>",
        f'<div class="plot">{body}</div>',
    ]


def _report_picks(picks: list[dict], n_selected: int) -> list[str]:
    shown = picks[:REPORT_THUMBNAILS]
    note = f"first {len(shown)} of {n_selected}" if len(shown) < n_selected else f"{n_selected}"
    out = [f'<h2>Picks</h2><p class="muted">{_e(note)} in pick order; all are in samples.csv.</p>']
    out.append('<div class="grid">')
    for rank, pick in enumerate(shown):
        thumb = pick.get("thumbnail")
        if thumb:
            img = f'<img alt="pick {rank + 1}" src="{_data_uri("image/jpeg", thumb)}">'
        else:
            img = '<div class="none">no preview</div>'
        url = pick.get("url") or ""
        if url and _SAFE_URL_RE.match(url):
            img = f'<a href="{_e(url)}">{img}</a>'
        frame = "image" if pick.get("kind") == "image" else f"frame {_e(pick['frame_index'])}"
        error = pick.get("error")
        out.append(
            f'<div class="card">{img}<div>#{rank + 1} <code>{_e(pick["key"])}</code></div>'
            f"<div>{frame} · distance {fmt_number(float(pick['distance']))}</div>"
            f'<div class="muted">{_e(pick["reason"])}</div>'
            + (f'<div class="warn">not exported: {_e(error)}</div>' if error else "")
            + _card_neighbours(pick)
            + _card_pool_nearest(pick)
            + "</div>"
        )
    out.append("</div>")
    out += _report_pick_table(picks)
    return out


def _report_clips(clips: list[dict]) -> list[str]:
    """A strip of thumbnails per picked clip, with its time range and why it was picked."""
    if not clips:
        return []
    out = [f'<h2>Clips</h2><p class="muted">{len(clips)} picked, in pick order.</p>']
    for rank, clip in enumerate(clips):
        strip = clip.get("strip")
        img = (
            f'<img alt="clip {rank + 1}" src="{_data_uri("image/jpeg", strip)}">'
            if strip
            else '<div class="none">no preview</div>'
        )
        url = clip.get("url") or ""
        if url and _SAFE_URL_RE.match(url):
            img = f'<a href="{_e(url)}">{img}</a>'
        error = clip.get("error")
        out.append(
            f'<div class="clip">{img}<div>#{rank + 1} <code>{_e(clip["file"])}</code> '
            f"{float(clip['start_s']):.2f}–{float(clip['end_s']):.2f} s · "
            f"{_e(clip['frames'])} frames ({_e(clip['mode'] or 'not cut')})</div>"
            f'<div class="muted">{_e(clip["reason"])}</div>'
            + (f'<div class="warn">not exported: {_e(error)}</div>' if error else "")
            + "</div>"
        )
    return out


def _report_objects(objects: list[dict]) -> list[str]:
    """A card per picked object (its frame with the box, and the crop), label, score and why."""
    if not objects:
        return []
    shown = objects[:REPORT_THUMBNAILS]
    note = f"first {len(shown)} of {len(objects)}" if len(shown) < len(objects) else len(objects)
    out = [
        f'<h2>Objects</h2><p class="muted">{_e(note)} picked, in pick order: the frame with the '
        "predicted box, and the crop at full resolution.</p>",
        '<div class="objects">',
    ]
    for rank, obj in enumerate(shown):
        card = obj.get("card_png")
        img = (
            f'<img alt="object {rank + 1}" src="{_data_uri("image/png", card)}">'
            if card
            else '<div class="none">no preview</div>'
        )
        x, y, w, h = (float(v) for v in obj["box"])
        score = float(obj["score"])
        out.append(
            f'<div class="object" title="{_e(obj["object_id"])}">{img}'
            f"<div>#{rank + 1} <b>{_e(obj['label'])}</b>"
            + ("" if math.isnan(score) else f" · score {score:.2f}")
            + f"</div><div><code>{_e(obj['key'])}</code> frame {_e(obj['frame_index'])} · "
            f"box {x:.0f}, {y:.0f}, {w:.0f}×{h:.0f} px</div>"
            f'<div class="muted">{_e(obj["reason"])}</div></div>'
        )
    out.append("</div>")
    return out


def _where(item: dict) -> str:
    frame = "" if item.get("kind") == "image" else f" #{_e(item['frame_index'])}"
    return f"<code>{_e(item['key'])}</code>{frame}"


def _card_pool_nearest(pick: dict) -> str:
    """The pick's nearest sample already in the pool (found with the pool's index), if known."""
    near = pick.get("pool_nearest")
    if not near:
        return ""
    return (
        f'<div class="muted pool-nearest">nearest already in the pool: {_where(near)} '
        f"({fmt_number(near['distance'], 3)})</div>"
    )


def _card_neighbours(pick: dict) -> str:
    """What the pick stands for: how many candidates, and its nearest unpicked ones."""
    neighbours = pick.get("neighbours") or []
    if not neighbours and "represented" not in pick:
        return ""
    figures = []
    for n in neighbours:
        thumb = n.get("thumbnail")
        img = (
            f'<img alt="neighbour" src="{_data_uri("image/jpeg", thumb)}">'
            if thumb
            else '<div class="none">n/a</div>'
        )
        title = f"{n['key']} frame {n['frame_index']}"
        figures.append(f'<figure title="{_e(title)}">{img}{fmt_number(n["distance"], 2)}</figure>')
    dups = len(pick.get("duplicates") or [])
    text = f"stands for {_e(pick.get('represented', 1))} candidates"
    text += f", {dups} exact duplicates removed" if dups else ""
    return (
        f'<div class="muted">{text}; nearest not picked:</div>'
        f'<div class="nb neighbours">{"".join(figures)}</div>'
    )


def _report_pick_table(picks: list[dict]) -> list[str]:
    """Every pick (not only the cards): what it stands for, its nearest unpicked candidates."""
    if not any("neighbours" in p for p in picks):
        return []
    out = [
        "<h2>What each pick stands for</h2>",
        '<p class="muted">Candidates represented (nearest pick), the nearest candidates that '
        "were not picked (distance), and exact duplicates removed in favour of the pick.</p>",
        "<table><tr><th>#</th><th>pick</th><th>stands for</th><th>nearest not picked</th>"
        "<th>duplicates removed</th></tr>",
    ]
    for rank, pick in enumerate(picks):
        near = ", ".join(
            f"{_where(n)} ({fmt_number(n['distance'], 3)})" for n in pick.get("neighbours", [])
        )
        dups = ", ".join(_where(d) for d in pick.get("duplicates", []))
        out.append(
            f'<tr><td class="n">{rank + 1}</td><td>{_where(pick)}</td>'
            f'<td class="n">{_e(pick.get("represented", ""))}</td><td>{near}</td>'
            f"<td>{dups}</td></tr>"
        )
    out.append("</table>")
    return out


def _report_problems(summary: RunSummary, picks: list[dict]) -> list[str]:
    out = []
    failed = [p for p in picks if p.get("error")]
    if failed:
        out.append(
            f'<h2 class="warn">Picked frames not exported ({len(failed)})</h2>'
            '<p class="muted">The video could not be re-decoded at upload time; these picks are '
            "left out of filenames.txt, samples.csv and labelstudio.json.</p>"
        )
        out.append("<table><tr><th>file</th><th>frame</th><th>reason</th></tr>")
        out += [
            f"<tr><td><code>{_e(p['key'])}</code></td><td>{_e(p['frame_index'])}</td>"
            f"<td>{_e(p['error'])}</td></tr>"
            for p in failed
        ]
        out.append("</table>")
    if summary.corrupt:
        total = summary.files_corrupt + summary.files_skipped
        more = f" (first {len(summary.corrupt)} of {total})" if total > len(summary.corrupt) else ""
        out.append(f"<h2>Corrupt or skipped files{_e(more)}</h2>")
        out.append("<table><tr><th>file</th><th>reason</th></tr>")
        out += [
            f"<tr><td><code>{_e(key)}</code></td><td>{_e(reason)}</td></tr>"
            for key, reason in summary.corrupt
        ]
        out.append("</table>")
    return out


def _report_outputs(summary: RunSummary, picks: list[dict]) -> list[str]:
    if not summary.outputs:
        return []
    described = {
        "filenames": ("filenames.txt", "one exported name per sample"),
        "samples_csv": ("samples.csv", "metadata, links and embeddings"),
        "labelstudio": ("labelstudio.json", "Label Studio import tasks"),
        "embedding_plot": ("embedding.png", "the embedding plot"),
        "report": ("report.html", "this report"),
    }
    out = ["<h2>Outputs</h2><ul>"]
    for name, url in summary.outputs.items():
        label, text = described.get(name, (name, ""))
        out.append(f"<li>{_link(url, label)}" + (f": {_e(text)}" if text else "") + "</li>")
    frames = sum(p.get("kind") == "video" and not p.get("error") for p in picks)
    images = sum(p.get("kind") == "image" for p in picks)
    out.append(
        f"<li>{frames} picked video frames as full-size PNG under <code>{FRAMES_PREFIX}/</code>; "
        f"{images} picked images referenced in place in the source</li>"
    )
    out.append("</ul>")
    if note := links_note([*summary.outputs.values(), *(p.get("url", "") for p in picks)]):
        out.append(f'<p class="muted">{note}</p>')
    return out


def links_note(urls: list[str]) -> str:
    """How to open the report's links (HTML), from what they are: `s3://` or presigned HTTPS."""
    if any(u.startswith("s3://") for u in urls):
        return (
            "The links above are <code>s3://</code> URLs, which a browser cannot open: presigned "
            "links are off (<code>storage.presign_links</code>), so no access key id is written "
            "into this file. Open one with <code>aws s3 cp &lt;url&gt; .</code> (add "
            "<code>--endpoint-url</code> for an S3-compatible store) or in the bucket's web "
            "console, or run with <code>storage.presign_links: true</code> for HTTPS links that "
            "open in a browser until they expire (<code>storage.presign_expiry_hours</code>, at "
            "most 7 days)."
        )
    expiries = [e for e in (_presigned_until(u) for u in urls) if e is not None]
    if expiries:
        until = min(expiries).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"The links above are presigned HTTPS URLs: they open in a browser until {until}, "
            "then answer 403 (run again, or <code>winnow export</code>, for fresh ones)."
        )
    return ""


def _presigned_until(url: str) -> datetime | None:
    """When a presigned S3 URL expires, or None for any other URL.

    SigV4 links carry `X-Amz-Date` and `X-Amz-Expires`; SigV2 links carry `Expires`.
    """
    if not url.startswith("https://"):
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    try:
        if "X-Amz-Expires" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            return signed.replace(tzinfo=UTC) + timedelta(seconds=int(query["X-Amz-Expires"][0]))
        if "Expires" in query:
            return datetime.fromtimestamp(int(query["Expires"][0]), tz=UTC)
    except (KeyError, ValueError):
        return None
    return None
