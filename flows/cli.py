"""The `winnow` command: run, demo, tags, status, gc, export, similar, train, reembed, select.

An entry point: it runs the curate flow, so it sits above `flows/` in the layers. Heavy imports
(Prefect, torch) happen inside the commands, so `winnow --help` answers at once.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Winnow: keep only the new images and video frames worth labelling.",
)
_STATE = {"debug": False}

# Options several commands share (one help text each).
EndpointUrl = Annotated[str | None, typer.Option(help="S3-compatible endpoint URL.")]
Region = Annotated[str | None, typer.Option(help="AWS region.")]
Profile = Annotated[str | None, typer.Option(help="AWS profile name.")]
CredentialsBlock = Annotated[str | None, typer.Option(help="Prefect AwsCredentials block name.")]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda.")]
PoolOutput = Annotated[str, typer.Option(help="Output folder or s3:// prefix of the datapool.")]
PoolSource = Annotated[
    str | None, typer.Option(help="Raw data (default: the source the pool records).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
AsJsonSummary = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
NSamples = Annotated[int | None, typer.Option(help="Samples to select.")]
Proportion = Annotated[float | None, typer.Option(help="Fraction of candidates to select.")]
MinDistance = Annotated[float | None, typer.Option(help="Stop below this distance.")]
SelectionSeed = Annotated[int | None, typer.Option(help="Seed of the selection.")]
NewTag = Annotated[str | None, typer.Option(help="Name of the tag to create.")]
EmbeddingModel = Annotated[
    str | None, typer.Option(help="Embedding model (resnet18, resnet50, …).")
]
Weights = Annotated[
    str | None,
    typer.Option(help="'default' (pretrained), 'none', pool:<model-id>, a checkpoint path or URL."),
]
InputSize = Annotated[int | None, typer.Option(help="Model input size in pixels.")]
BatchSize = Annotated[int | None, typer.Option(help="Frames per model batch.")]
SampleFps = Annotated[float | None, typer.Option(help="Video frames per second to keep.")]
KeyframesOnly = Annotated[
    bool | None, typer.Option("--keyframes-only", help="Keep only video keyframes.")
]
ProcessAll = Annotated[bool | None, typer.Option("--process-all", help="Reprocess every file.")]
RelevantFilenames = Annotated[
    str | None, typer.Option(help="File listing keys, folders/ or globs to consider.")
]
ParamsFile = Annotated[
    Path | None,
    typer.Option(
        help="JSON file of the command's parameters (as the flow takes them); options override it."
    ),
]
ScaleMode = Annotated[
    str | None,
    typer.Option(
        help="Where decode+embed runs: local (this process), pool (child runs of "
        "embed-shards/gpu on its work pool) or dask (the cluster at --scale-address)."
    ),
]
ScaleRuns = Annotated[int | None, typer.Option(help="--scale-mode pool: most child runs.")]
ScaleAddress = Annotated[
    str | None, typer.Option(help="--scale-mode dask: the scheduler, tcp://host:port.")
]

# The parameter model and the flow of each command that runs one ("module:name", imported when
# the command runs, so `winnow --help` stays fast). `demo` runs `run`'s.
_FLOWS = {
    "run": ("winnow.params:CurateParams", "flows.curate:curate"),
    "train": ("winnow.training:TrainParams", "flows.train:train"),
    "reembed": ("winnow.training:ReembedParams", "flows.reembed:reembed"),
    "select": ("winnow.training:ReselectParams", "flows.reselect:reselect"),
}


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks (errors are one line without).")
    ] = False,
) -> None:
    _STATE["debug"] = debug


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _set(d: dict, path: str, value: Any) -> None:
    """Set a nested key ('selection.n_samples') when a CLI option was given."""
    if value is None:
        return
    *parents, last = path.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def _invalid(exc: Any) -> str:
    """A pydantic ValidationError as one line: each field and what is wrong with it."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}" for e in exc.errors()
    )
    return f"invalid parameters: {problems} (fix the option, or the value in --params-file)"


def _load(spec: str) -> Any:
    """The object a "module:name" spec names (imported now)."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def build_params(base: dict, options: dict[str, Any], command: str = "run") -> Any:
    """Merge CLI options over a parameters dict and validate them as the command's model.

    Args:
        base: Parameters to start from (a --params-file's content); not modified.
        options: Values by `_set` path ('selection.n_samples'); `None` leaves a value as it is.
        command: A key of `_FLOWS`: its parameter model validates (default `CurateParams`).
    """
    from pydantic import ValidationError

    data = json.loads(json.dumps(base))
    for path, value in options.items():
        _set(data, path, value)
    try:
        return _load(_FLOWS[command][0]).model_validate(data)
    except ValidationError as exc:
        _fail(_invalid(exc))


class _Brief(logging.Formatter):
    """Formats records without their traceback (the console shows the error's one line)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _brief_console_logs() -> None:
    """Keep tracebacks out of the terminal's log lines (the Prefect UI still gets them)."""
    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler.formatter, _Brief
            ):
                handler.setFormatter(_Brief(handler.formatter))


class _TerminalBar:
    """A progress bar for decode + embed on a terminal (rate logging covers the rest)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, update: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        if self.bar is None:
            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                "{task.fields[rate]}",
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task(update.description, total=update.total, rate="")
        rate = f"{update.items} frames, {update.items / update.elapsed_s:.1f} frames/s"
        self.bar.update(self.task, completed=update.done, total=update.total, rate=rate)
        if update.done >= update.total:
            self.close()

    def close(self) -> None:
        """Stop drawing (idempotent)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def print_summary(summary: dict) -> None:
    """Print what a run did, for people (the same rows as the UI's summary and the report)."""
    from winnow.summary import RunSummary, render_text

    typer.echo(render_text(RunSummary.from_dict(summary)))


# Settings for the temporary Prefect server a local run starts (each unless the user set it):
# its start-up time on a slow first start, and no telemetry. With a fresh PREFECT_HOME the
# server's telemetry heartbeat fails on its own database ("database is locked", a traceback in
# the terminal) and, offline, the client's telemetry logs "Failed to send telemetry".
_LOCAL_RUN_SETTINGS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


def _flow(command: str) -> Any:
    """The command's flow (see `_FLOWS`), imported now: Prefect reads its settings on import."""
    for name, value in _LOCAL_RUN_SETTINGS.items():
        os.environ.setdefault(name, value)
    return _load(_FLOWS[command][1])


def run_flow(flow_fn: Any, params: Any) -> dict:
    """Run a flow (curate, train, reembed, reselect) locally with validated parameters.

    Errors end as one line (tracebacks with --debug); a terminal gets a progress bar.
    """
    from tasks.progress import listening
    from winnow.errors import WinnowError

    if not _STATE["debug"]:
        _brief_console_logs()
    bar = _TerminalBar()
    try:
        with listening(bar if sys.stderr.isatty() else lambda update: None):
            return flow_fn(**{name: getattr(params, name) for name in type(params).model_fields})
    except WinnowError as exc:
        if _STATE["debug"]:
            raise
        _fail(str(exc), code=1)
    finally:
        bar.close()
    raise AssertionError("unreachable")


def run_curate(params: Any) -> dict:
    """Run the curate flow with validated parameters; return its summary."""
    return run_flow(_flow("run"), params)


def _run_command(
    command: str,
    options: dict[str, Any],
    *,
    storage: tuple[str | None, str | None, str | None, str | None],
    params_file: Path | None = None,
    as_json: bool = False,
    show: Callable[[dict], None] = print_summary,
) -> None:
    """A command's life: options -> validated parameters -> its flow, run here -> the result.

    Args:
        command: A key of `_FLOWS` (the parameter model and the flow).
        options: Option values by `_set` path ('selection.n_samples'); `None`: not given.
        storage: The --endpoint-url, --region, --profile and --credentials-block values.
        params_file: A JSON file of parameters the options override.
        as_json: Print the result as JSON instead of calling `show`.
        show: Prints the result for people.
    """
    endpoint_url, region, profile, credentials_block = storage
    options = {
        **options,
        "storage.endpoint_url": endpoint_url,
        "storage.region": region,
        "storage.profile": profile,
        "storage.credentials_block": credentials_block,
    }
    base = json.loads(params_file.read_text()) if params_file else {}
    result = run_flow(_flow(command), build_params(base, options, command))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
    else:
        show(result)


MinChange = Annotated[
    float | None,
    typer.Option(help="Keep a video frame only if it changed this much (0..1, e.g. 0.02)."),
]
PerShot = Annotated[int | None, typer.Option(help="Keep at least this many frames a shot.")]
DetectShots = Annotated[
    bool | None, typer.Option("--detect-shots", help="Record the videos' shots (hard cuts).")
]
Quality = Annotated[
    bool | None,
    typer.Option("--quality", help="Drop dark, overexposed, flat, letterboxed frames."),
]
Unit = Annotated[str | None, typer.Option(help="What is picked: frame (default), clip or object.")]
Predictions = Annotated[
    str | None,
    typer.Option(
        help="Object predictions (objects.predictions): a table (.csv, .parquet, .jsonl) or COCO "
        ".json of boxes on the files; each box becomes an object sample (see README, Objects)."
    ),
]

# `winnow run` option → flow parameter (dotted: nested).
_RUN_FIELDS = {
    **{name: name for name in ("source", "output", "process_all", "relevant_filenames")},
    "tag": "tag_name",
    **{n: f"selection.{n}" for n in ("n_samples", "proportion", "min_distance", "seed", "unit")},
    **{f"{n}": f"embedding.{n}" for n in ("model", "weights", "input_size", "batch_size")},
    "device": "embedding.device",
    **{n: f"frames.{n}" for n in ("every_n_frames", "sample_fps", "keyframes_only")},
    **{n: f"frames.{n}" for n in ("max_frames_per_video", "min_change", "per_shot")},
    "detect_shots": "frames.detect_shots",
    "quality": "frames.quality",
    "predictions": "objects.predictions",
    **{f"scale_{n}": f"scale.{n}" for n in ("mode", "runs", "address")},
}


@app.command()
def run(
    source: Annotated[str, typer.Option(help="Raw data: local folder or s3://bucket/prefix.")],
    output: Annotated[
        str | None,
        typer.Option(help="Output folder or s3:// prefix (default: .winnow beside source)."),
    ] = None,
    n_samples: NSamples = None,
    proportion: Proportion = None,
    min_distance: MinDistance = None,
    unit: Unit = None,
    model: EmbeddingModel = None,
    weights: Weights = None,
    input_size: InputSize = None,
    batch_size: BatchSize = None,
    device: Device = None,
    every_n_frames: Annotated[int | None, typer.Option(help="Keep every n-th video frame.")] = None,
    sample_fps: SampleFps = None,
    keyframes_only: KeyframesOnly = None,
    max_frames_per_video: Annotated[int | None, typer.Option(help="Cap frames per video.")] = None,
    min_change: MinChange = None,
    per_shot: PerShot = None,
    detect_shots: DetectShots = None,
    quality: Quality = None,
    predictions: Predictions = None,
    scale_mode: ScaleMode = None,
    scale_runs: ScaleRuns = None,
    scale_address: ScaleAddress = None,
    seed: SelectionSeed = None,
    tag: NewTag = None,
    process_all: ProcessAll = None,
    relevant_filenames: RelevantFilenames = None,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    profile: Profile = None,
    credentials_block: CredentialsBlock = None,
    params_file: ParamsFile = None,
    as_json: AsJsonSummary = False,
) -> None:
    """Curate the new files of SOURCE into a new tag (runs the Prefect flow locally)."""
    given = dict(locals())
    given["quality"] = {} if quality else None  # the default rule, or unset
    options = {field: given[name] for name, field in _RUN_FIELDS.items()}
    storage = (endpoint_url, region, profile, credentials_block)
    _run_command("run", options, storage=storage, params_file=params_file, as_json=as_json)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo bucket goes.")] = Path(
        "demo-data"
    ),
    videos: Annotated[int, typer.Option(help="Videos per batch.")] = 4,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 300,
    n_samples: Annotated[int, typer.Option(help="Samples to select per run.")] = 50,
    input_size: Annotated[int, typer.Option(help="Model input size (small is fast).")] = 112,
    every_n_frames: Annotated[int, typer.Option(help="Keep every n-th frame.")] = 3,
) -> None:
    """Make a sample bucket, curate it, add new videos, curate again."""
    from winnow import demo as demo_media
    from winnow.storage import LocalStore

    raw = directory / "raw"
    if raw.exists() and any(raw.iterdir()):
        _fail(f"{raw} is not empty: remove {directory} or pass --dir to start afresh")
    store = LocalStore(raw)
    params = build_params(
        {},
        {
            "source": str(raw),
            "output": str(directory / "output"),
            "selection.n_samples": n_samples,
            "embedding.weights": "none",
            "embedding.input_size": input_size,
            "frames.every_n_frames": every_n_frames,
        },
    )
    typer.secho(
        "note: this demo uses weights='none' (random weights: pretrained weights cannot be "
        "downloaded offline); selections are only as good as the embedding.",
        fg=typer.colors.YELLOW,
    )
    typer.secho(f"\n== batch 1: {videos} videos, a few images and broken files -> {raw}", bold=True)
    demo_media.write_demo_files(store, n_videos=videos, first=0, frames_per_video=frames)
    demo_media.write_corrupt_files(store)
    print_summary(run_curate(params))
    typer.secho(f"\n== batch 2: {videos} more videos", bold=True)
    demo_media.write_demo_files(
        store, n_videos=videos, n_images=0, first=videos, frames_per_video=frames
    )
    print_summary(run_curate(params))
    typer.secho("\n== batch 3: no new file", bold=True)
    print_summary(run_curate(params))


def _s3_options(endpoint_url: str | None) -> Any:
    """Storage options of the commands that read a pool (only --endpoint-url)."""
    from winnow.storage import S3Options

    return S3Options(endpoint_url=endpoint_url) if endpoint_url else None


def _open_pool(output: str, endpoint_url: str | None) -> Any:
    from winnow.datapool import Datapool
    from winnow.storage import open_store

    return Datapool(open_store(output, _s3_options(endpoint_url)).child("pool"))


@app.command()
def tags(
    output: Annotated[str, typer.Option(help="The run's output folder or s3:// prefix.")],
    endpoint_url: EndpointUrl = None,
) -> None:
    """List the tags of a datapool."""
    from winnow.summary import fmt_number

    snapshot = _open_pool(output, endpoint_url).load()
    if not snapshot.tags:
        typer.echo("no tags yet")
    for t in snapshot.tags:
        counts = json.loads(t.counts)
        typer.echo(
            f"{t.name}\t{len(t.sample_ids)} samples\tparent {t.parent or '-'}\t{t.created}\t"
            f"new files {counts.get('files_new', '?')}\tcoverage {fmt_number(t.coverage_before)} -> "
            f"{fmt_number(t.coverage_after)}"
        )


@app.command()
def status(
    output: Annotated[str, typer.Option(help="The run's output folder or s3:// prefix.")],
    endpoint_url: EndpointUrl = None,
) -> None:
    """Show a datapool's version, model and counts."""
    pool = _open_pool(output, endpoint_url)
    snapshot = pool.load()
    statuses = snapshot.files.column("status").to_pylist()
    typer.echo(f"datapool {pool.url}: version {snapshot.version}")
    typer.echo(f"model: {snapshot.model.describe() if snapshot.model else 'none yet'}")
    typer.echo(
        f"files: {len(snapshot.fingerprints)} ("
        + ", ".join(f"{s} {statuses.count(s)}" for s in ("ok", "corrupt", "skipped"))
        + ")"
    )
    counts = snapshot.manifest.counts if snapshot.manifest else {}
    typer.echo(f"samples: {counts.get('samples', 0)}, dataset: {len(snapshot.dataset_ids)}")
    typer.echo(f"tags: {', '.join(t.name for t in snapshot.tags) or 'none'}")
    from winnow.training import list_models

    trained = [
        f"{c.weights} ({c.backbone}, {c.input_size}px, {c.epochs} epochs, loss {c.final_loss:.4f})"
        for c in list_models(pool.store)
    ]
    typer.echo(f"trained models: {', '.join(trained) or 'none'}")


@app.command("gc")
def gc_cmd(
    output: Annotated[str, typer.Option(help="The run's output folder or s3:// prefix.")],
    older_than: Annotated[
        str,
        typer.Option(
            help="Only remove garbage last written longer ago than this (7d, 36h, 90m); a "
            "live run's staging is younger."
        ),
    ] = "7d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Remove abandoned staged shards and parts of lost commits (never what a version names)."""
    from winnow import gc

    pool = _open_pool(output, endpoint_url)
    report = gc.collect_garbage(pool, older_than_s=gc.parse_duration(older_than), dry_run=dry_run)
    for key in [*report.staged, *report.parts]:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {pool.store.url_for(key)}")
    typer.echo(f"datapool {pool.url}: {report.describe()}")


@app.command()
def export(
    output: Annotated[str, typer.Option(help="The run's output folder or s3:// prefix.")],
    tag: Annotated[str, typer.Option(help="Tag to export.")],
    cumulative: Annotated[
        bool, typer.Option(help="Include the tag's ancestors (the dataset up to the tag).")
    ] = False,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="filenames: one exported name per line (frames as PNG names, images as source "
            "keys); csv: one row per member; parquet: the same with embeddings (needs --out); "
            "labelstudio: Label Studio import tasks (with the members' objects as rectanglelabels "
            "pre-annotations); coco: COCO detection JSON of the members and their predicted "
            "boxes.",
        ),
    ] = "filenames",
    out: Annotated[
        Path | None,
        typer.Option(help="Write to this file instead of printing (parquet: required)."),
    ] = None,
    document_root: Annotated[
        str,
        typer.Option(
            help="labelstudio, local outputs: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; "
            "image paths are written relative to it."
        ),
    ] = "/",
    endpoint_url: EndpointUrl = None,
) -> None:
    """Export a tag's members: filenames (default), CSV, Parquet or Label Studio tasks."""
    from winnow import outputs
    from winnow.errors import WinnowError
    from winnow.storage import open_store

    if format not in outputs.EXPORT_FORMATS:
        _fail(f"--format must be one of {', '.join(outputs.EXPORT_FORMATS)}, got {format!r}")
    if format == "parquet" and out is None:
        _fail("--format parquet writes a binary file: give --out FILE")
    options = _s3_options(endpoint_url)
    snapshot = _open_pool(output, endpoint_url).load()
    try:
        data = outputs.export_tag(
            snapshot,
            tag=tag,
            fmt=format,
            cumulative=cumulative,
            output=open_store(output, options),
            open_source=lambda url: open_store(url, options),
            document_root=document_root,
        )
    except (WinnowError, ValueError) as exc:
        _fail(str(exc), code=1)
    if out is not None:
        out.write_bytes(data)
        typer.echo(f"wrote {out} ({len(data)} bytes)", err=True)
    else:
        sys.stdout.write(data.decode("utf-8"))


@app.command()
def similar(
    output: Annotated[str, typer.Option(help="The run's output folder or s3:// prefix.")],
    text: Annotated[
        list[str] | None,
        typer.Option(help="Words to search for (CLIP-family pools: open_clip:...); repeatable."),
    ] = None,
    image: Annotated[
        list[str] | None, typer.Option(help="Path or URL of a query image; repeatable.")
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(help="A sample of the pool as query: KEY or KEY#FRAME; repeatable."),
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Search only this tag's members.")] = None,
    k: Annotated[int, typer.Option("--k", help="Samples to show.", min=1)] = 20,
    weights: Annotated[
        str | None,
        typer.Option(help="The pool's checkpoint (path, URL, pool:<id>) if it was built from one."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """Find the pool's samples nearest to a text, an image or a sample (exact search)."""
    from dataclasses import asdict

    from winnow import search
    from winnow.errors import WinnowError

    pool = _open_pool(output, endpoint_url)
    try:
        snapshot = pool.load()
        queries = search.query_embeddings(
            snapshot,
            texts=text or (),
            images=image or (),
            keys=key or (),
            weights=weights,
            s3=_s3_options(endpoint_url),
            device=device,
        )
        hits = search.search_pool(snapshot, queries, k=k, tag=tag, output_url=output)
    except WinnowError as exc:
        _fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps([asdict(h) for h in hits], indent=1))
        return
    typer.echo("rank\tdistance\tkey\tframe\ttag\tlink")
    for h in hits:
        typer.echo(
            f"{h.rank}\t{h.distance:.4f}\t{h.key}\t{h.frame_index}\t{h.tag or '-'}\t{h.link or '-'}"
        )


@app.command()
def leaks(
    output: Annotated[str, typer.Option(help="The run's output folder or s3:// prefix.")],
    tag: Annotated[str, typer.Option(help="The tag checked, e.g. a test set.")],
    against: Annotated[str, typer.Option(help="The tag it must not leak into, e.g. training.")],
    distance: Annotated[
        float,
        typer.Option(help="Pairs closer than this leak (L2 between unit embeddings, 0..2).", min=0),
    ] = 0.05,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """List pairs of samples of two tags closer than --distance (a test set leaking into training).

    Writes them to <output>/leaks/<tag>-vs-<against>.csv too; exits 1 when there is a leak.
    """
    from dataclasses import asdict

    from winnow import index
    from winnow.errors import WinnowError
    from winnow.storage import open_store

    pool = _open_pool(output, endpoint_url)
    try:
        snapshot = pool.load()
        found, exact = index.find_leaks(snapshot, tag=tag, against=against, distance=distance)
        where = index.write_leaks(
            open_store(output, _s3_options(endpoint_url)), found, tag=tag, against=against
        )
    except WinnowError as exc:
        _fail(str(exc), code=2)
    if as_json:
        typer.echo(json.dumps([asdict(leak) for leak in found], indent=1))
    else:
        typer.echo("distance\tkey\tframe\tother key\tother frame")
        for leak in found:
            typer.echo(
                f"{leak.distance:.4f}\t{leak.key}\t{leak.frame_index}\t{leak.other_key}\t"
                f"{leak.other_frame_index}"
            )
        how = "exact search" if exact else "the pool's similarity index"
        typer.echo(
            f"{len(found)} pairs of {tag!r} and {against!r} closer than {distance} ({how}); "
            f"CSV: {where}",
            err=True,
        )
    if found:
        raise typer.Exit(1)


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _option(kind: type, text: str) -> Any:
    """A `train` option's type: `kind` or None (unset: the `TrainOptions` default), with help."""
    return Annotated[kind | None, typer.Option(help=text)]


TrainModel = _option(str, "Backbone to train (resnet18, …).")
InitWeights = _option(str, "Start from 'none', 'default', pool:<id> or a checkpoint.")
TrainTags = _option(str, "Train on these tags' members (comma-separated).")
MaxSamples = _option(int, "Train on at most this many.")
Epochs = _option(int, "Epochs (default 20).")
BatchSize = _option(int, "Samples per step (default 256).")
TrainSize = _option(int, "Training size in px (default 64; 32 for tiny images).")
LearningRate = _option(float, "Peak learning rate (default 2e-3).")
WeightDecay = _option(float, "AdamW weight decay.")
Temperature = _option(float, "NT-Xent temperature (default 0.5).")
CropMinScale = _option(float, "Smallest area fraction of a view's crop (default 0.5; 1: no crop).")
NoFlip = Annotated[
    bool, typer.Option("--no-flip", help="No horizontal flips (text, digits, signs).")
]
Rotation = _option(float, "Rotate views by up to this many degrees.")
Translate = _option(float, "Shift views by up to this fraction of their size.")
Shear = _option(float, "Shear views by up to this many degrees.")
ColorJitter = _option(float, "Colour jitter strength (default 1; 0: none).")
ColorJitterProb = _option(float, "Probability of colour jitter per view (default 0.8).")
Grayscale = _option(float, "Probability of a grey view (default 0.2).")
Noise = _option(float, "Std of Gaussian pixel noise, pixels in 0..1 (0: none).")
TrainSeed = _option(int, "Seed of samples, init and views.")
ModelId = _option(str, "Name of the model in the pool.")

# `train`'s options that map one to one onto a `TrainOptions` field (option name -> field)
_TRAIN_FIELDS = {
    **{name: name for name in ("model", "init_weights", "max_samples", "epochs", "batch_size")},
    **{name: name for name in ("input_size", "learning_rate", "weight_decay", "temperature")},
    **{name: name for name in ("crop_min_scale", "translate", "color_jitter", "seed", "device")},
    **{name: name for name in ("color_jitter_prob", "model_id")},
    "rotation": "rotation_degrees",
    "shear": "shear_degrees",
    "grayscale": "grayscale_prob",
    "noise": "noise_std",
}


@app.command()
def train(
    output: PoolOutput,
    source: PoolSource = None,
    model: TrainModel = None,
    init_weights: InitWeights = None,
    tags: TrainTags = None,
    max_samples: MaxSamples = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    input_size: TrainSize = None,
    learning_rate: LearningRate = None,
    weight_decay: WeightDecay = None,
    temperature: Temperature = None,
    crop_min_scale: CropMinScale = None,
    no_flip: NoFlip = False,
    rotation: Rotation = None,
    translate: Translate = None,
    shear: Shear = None,
    color_jitter: ColorJitter = None,
    color_jitter_prob: ColorJitterProb = None,
    grayscale: Grayscale = None,
    noise: Noise = None,
    seed: TrainSeed = None,
    device: Device = None,
    model_id: ModelId = None,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    profile: Profile = None,
    credentials_block: CredentialsBlock = None,
    as_json: AsJson = False,
) -> None:
    """Train a self-supervised (SimCLR) embedding on the frames of a pool's samples."""
    given = locals()
    options = {
        "output": output,
        "source": source,
        "training.tags": _names(tags),
        "training.horizontal_flip": False if no_flip else None,
        **{f"training.{field}": given[name] for name, field in _TRAIN_FIELDS.items()},
    }
    _run_command(
        "train",
        options,
        storage=(endpoint_url, region, profile, credentials_block),
        as_json=as_json,
        show=lambda result: _print_trained(result, output=output),
    )


def _print_trained(result: dict, *, output: str) -> None:
    resumed = f" (resumed after epoch {result['resumed_from']})" if result["resumed_from"] else ""
    typer.echo(
        f"model {result['model_id']}: {result['epochs']} epochs, final loss "
        f"{result['final_loss']:.4f}, {result['samples']} samples of pool version "
        f"{result['data_version']}{resumed}"
    )
    typer.echo(f"checkpoint: {result['url']}")
    typer.echo(
        f"use it: winnow reembed --output {output} --weights {result['weights']} "
        f"--input-size {result['input_size']}"
    )


@app.command()
def reembed(
    output: PoolOutput,
    source: PoolSource = None,
    model: EmbeddingModel = None,
    weights: Weights = None,
    input_size: InputSize = None,
    batch_size: BatchSize = None,
    device: Device = None,
    seed: Annotated[int | None, typer.Option(help="Seed of random weights.")] = None,
    shard_files: Annotated[int | None, typer.Option(help="Files per shard.")] = None,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    profile: Profile = None,
    credentials_block: CredentialsBlock = None,
    as_json: AsJson = False,
) -> None:
    """Move a pool to a new embedding model: every sample's frame is embedded again."""
    options = {
        "output": output,
        "source": source,
        "shard_files": shard_files,
        "embedding.model": model,
        "embedding.weights": weights,
        "embedding.input_size": input_size,
        "embedding.batch_size": batch_size,
        "embedding.device": device,
        "embedding.seed": seed,
    }
    _run_command(
        "reembed",
        options,
        storage=(endpoint_url, region, profile, credentials_block),
        as_json=as_json,
        show=_print_reembedded,
    )


def _print_reembedded(result: dict) -> None:
    if result.get("nothing_to_do"):
        typer.echo(f"the pool already uses {result['model']}: nothing to do")
    else:
        typer.echo(
            f"re-embedded {result['samples']} samples: version {result['version_before']} -> "
            f"{result['version_after']}, model {result['model_before']} -> {result['model']} "
            f"({result['shards_resumed']} of {result['shards']} shards resumed, "
            f"{result['files_dropped']} files dropped)"
        )


@app.command("select")
def select_cmd(
    output: PoolOutput,
    source: PoolSource = None,
    n_samples: NSamples = None,
    proportion: Proportion = None,
    min_distance: MinDistance = None,
    strategy: Annotated[
        str | None, typer.Option(help="Strategies, comma-separated (diversity, random, …).")
    ] = None,
    seed: SelectionSeed = None,
    tag: NewTag = None,
    from_tags: Annotated[
        str | None, typer.Option(help="Pick only among these tags' members (comma-separated).")
    ] = None,
    from_runs: Annotated[
        str | None, typer.Option(help="Pick only among these runs' samples (comma-separated).")
    ] = None,
    afresh: Annotated[
        bool,
        typer.Option("--afresh", help="Ignore the dataset (pick afresh, e.g. within one tag)."),
    ] = False,
    params_file: ParamsFile = None,
    endpoint_url: EndpointUrl = None,
    region: Region = None,
    profile: Profile = None,
    credentials_block: CredentialsBlock = None,
    as_json: AsJsonSummary = False,
) -> None:
    """Make a new tag from the samples a pool already holds (embeddings from the pool only)."""
    options = {
        "output": output,
        "source": source,
        "tag_name": tag,
        "from_tags": _names(from_tags),
        "from_runs": _names(from_runs),
        "against_dataset": False if afresh else None,
        "selection.n_samples": n_samples,
        "selection.proportion": proportion,
        "selection.min_distance": min_distance,
        "selection.strategies": _names(strategy),
        "selection.seed": seed,
    }
    storage = (endpoint_url, region, profile, credentials_block)
    _run_command("select", options, storage=storage, params_file=params_file, as_json=as_json)


def _one_line(exc: BaseException) -> str:
    """An error as one line: the first line of its message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main() -> None:
    """Entry point: every error ends as one line and exit code 1 (a traceback with --debug)."""
    try:
        app()
    except Exception as exc:
        if _STATE["debug"]:
            raise
        typer.secho(
            f"error: {_one_line(exc)} (run with --debug for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
