"""Parameters of the curate flow: the Prefect UI form, the CLI options and their validation.

Each top-level parameter is declared once here as an `Annotated` type with its description and
bounds; `CurateParams` groups them and the flow's signature reuses the same types, so the
deployment's parameter schema, the server-side validation and `winnow run --help` agree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from winnow.backbones import OPEN_CLIP
from winnow.embedding import POOL_WEIGHTS, EmbeddingOptions, pool_model_key
from winnow.media import FrameOptions
from winnow.objects import ObjectOptions
from winnow.records import NAME_RE
from winnow.scale import ScaleOptions
from winnow.selection import OBJECT_COLUMNS, SelectionConfig
from winnow.storage import sibling_url

# A name the user gives: a tag, a trained model's id (a letter or digit, then up to 99 of
# letters, digits, '.', '_' and '-'). Also a key part in the pool, so it stays this narrow.


class StorageParams(BaseModel):
    """How to reach S3 (ignored for local folders). Credentials are never parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Storage")

    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, Ceph, …); empty for AWS S3.",
        examples=["http://127.0.0.1:9000"],
    )
    region: str | None = Field(None, description="AWS region; empty for the boto3 default chain.")
    profile: str | None = Field(
        None, description="Named AWS profile (~/.aws/config) on the worker; empty for the default."
    )
    credentials_block: str | None = Field(
        None,
        description="Name of a Prefect AwsCredentials block (prefect-aws) holding the keys; "
        "empty for the boto3 default chain (env vars, profile, instance role).",
    )
    max_attempts: int = Field(
        8, ge=1, le=30, description="boto3 attempts per S3 call on throttling, 5xx and resets."
    )
    presign_links: bool = Field(
        False,
        description="Put presigned HTTPS links (instead of s3:// URLs) in the report, Label "
        "Studio tasks and the Prefect UI. They carry the access key id (and the session token "
        "of temporary credentials), so they are off unless asked for.",
    )
    presign_expiry_hours: int = Field(
        168, ge=1, le=168, description="Lifetime of presigned links (S3 allows at most 7 days)."
    )


Source = Annotated[
    str,
    Field(
        min_length=1,
        description="Raw data: a local folder or s3://bucket/prefix. Only read, never written.",
        examples=["s3://my-bucket/raw", "./data/raw"],
    ),
]
Output = Annotated[
    str | None,
    Field(
        description="Where the datapool, frames and exports go (local folder or s3://…). "
        "Empty: a '.winnow' folder beside the source.",
    ),
]
RelevantFilenames = Annotated[
    str | None,
    Field(
        description="A text file listing the keys, folder prefixes (ending in '/') or glob "
        "patterns to consider, one per line: a key in the source or a full URL/path.",
    ),
]
ProcessAll = Annotated[
    bool,
    Field(description="Reprocess every file, not only new ones, into a fresh tag."),
]
TagName = Annotated[
    str | None,
    Field(
        pattern=NAME_RE.pattern,
        description="Name of the tag this run creates; empty: run-0001, run-0002, …",
    ),
]
ShardFiles = Annotated[
    int,
    Field(ge=1, le=10_000, description="Files per shard (the unit of progress and of resume)."),
]
ShardSeconds = Annotated[
    float | None,
    Field(
        gt=0,
        description="Split videos longer than this many seconds into time-range shards, so "
        "several workers decode one long video at once (the frames are the same as decoding "
        "it whole). Empty: videos are never split. Planning then reads each new video's header "
        "(on S3 that downloads the video during discovery).",
    ),
]


class LeakCheck(BaseModel):
    """After the run's tag is registered: are its samples near duplicates of other tags'?"""

    model_config = ConfigDict(extra="forbid", title="Leak check")

    against: list[Annotated[str, Field(pattern=NAME_RE.pattern)]] = Field(
        ...,
        min_length=1,
        description="Tags the new tag must not leak into (e.g. a test set): pairs closer than "
        "`distance` are listed in the log and in leaks/<tag>-vs-<other>.csv under the output.",
    )
    distance: float = Field(
        0.05,
        gt=0,
        le=2,
        description="Pairs closer than this leak (L2 between unit embeddings, 0..2).",
    )
    fail: bool = Field(
        False,
        description="Fail the run when a leak is found (after the tag is registered and the "
        "summary published: the tag stays, the run is marked failed).",
    )


LeakChecks = Annotated[
    LeakCheck | None,
    Field(description="Check the new tag for leaks into other tags after it is registered."),
]


class CurateParams(BaseModel):
    """Everything one curate run needs."""

    model_config = ConfigDict(extra="forbid")

    source: Source
    output: Output = None
    relevant_filenames: RelevantFilenames = None
    process_all: ProcessAll = False
    tag_name: TagName = None
    frames: FrameOptions = Field(default_factory=FrameOptions)
    objects: ObjectOptions = Field(default_factory=ObjectOptions)
    embedding: EmbeddingOptions = Field(default_factory=EmbeddingOptions)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    storage: StorageParams = Field(default_factory=StorageParams)
    shard_files: ShardFiles = 32
    shard_seconds: ShardSeconds = None
    scale: ScaleOptions = Field(default_factory=ScaleOptions)
    leak_check: LeakChecks = None

    @model_validator(mode="after")
    def _check_urls(self) -> CurateParams:
        for name in ("source", "output"):
            url = getattr(self, name)
            if url and "://" in url and not url.startswith(("s3://", "file://")):
                raise ValueError(f"{name} {url!r}: use a local path, file:// or s3://bucket/prefix")
        if self.source.startswith("s3://") and not self.source[5:].split("/", 1)[0]:
            raise ValueError(f"source {self.source!r} names no bucket")
        if self.output and self.output.rstrip("/") == self.source.rstrip("/"):
            raise ValueError("output must differ from source (outputs would be rediscovered)")
        return self

    @model_validator(mode="after")
    def _objects_for_object_strategies(self) -> CurateParams:
        # caught here, before any work: object units and columns need boxes on the frames
        needs = self.selection.needs().columns
        wanted = [c for c in OBJECT_COLUMNS if c in needs and self.selection.predictions is None]
        if (self.selection.unit == "object" or wanted) and not self.objects.enabled:
            what = "selection.unit object" if self.selection.unit == "object" else wanted[0]
            raise ValueError(
                f"{what} needs objects: set objects.predictions to the detector's boxes (a "
                "table, COCO JSON, or objects.format yolo with objects.classes)"
            )
        return self

    @model_validator(mode="after")
    def _texts_need_a_text_tower(self) -> CurateParams:
        # caught here, before any work, not at the select step after a whole run's embedding
        texts = self.selection.needs().texts
        if texts and not self.embedding.model.startswith(OPEN_CLIP):
            raise ValueError(
                f"selection has text queries ({texts[0]!r}) but embedding.model "
                f"{self.embedding.model!r} has no text tower: use an open_clip:<arch>/<tag> model"
            )
        return self

    @model_validator(mode="after")
    def _pool_weights(self) -> CurateParams:
        # `pool:<model-id>` names a model trained in this run's datapool: its checkpoint's URL.
        weights = self.embedding.weights
        if weights.startswith(POOL_WEIGHTS):
            key = pool_model_key(weights[len(POOL_WEIGHTS) :])
            url = f"{self.output_url.rstrip('/')}/pool/{key}"
            self.embedding = self.embedding.model_copy(update={"weights": url})
        return self

    @property
    def output_url(self) -> str:
        """The output URL, defaulting to `.winnow` beside the source."""
        return self.output or sibling_url(self.source, ".winnow")

    def public_dict(self) -> dict:
        """Parameters as JSON-ready data, safe to store and show (no secrets are parameters)."""
        return self.model_dump(mode="json")


def parameter_docs(model: type[BaseModel] | None = None) -> str:
    """An `Args:` section (Google style) with the description of every parameter.

    Prefect 3.9 builds a deployment's parameter schema (the UI form) from the flow's signature
    and takes each top-level parameter's description from the flow docstring's `Args:`, not
    from `Annotated[..., Field(description=...)]`; nested models keep their own descriptions.

    Args:
        model: The flow's parameter model (default: `CurateParams`).
    """
    lines = ["Args:"]
    for name, field in (model or CurateParams).model_fields.items():
        text = field.description or inspect.getdoc(field.annotation).splitlines()[0]
        lines.append(f"    {name}: {text}")
    return "\n".join(lines)


def document_parameters(fn: Callable) -> Callable:
    """Append `parameter_docs()` to a flow function's docstring (apply it under `@flow`)."""
    return documented_by(CurateParams)(fn)


def documented_by(model: type[BaseModel]) -> Callable[[Callable], Callable]:
    """Like `document_parameters`, for a flow whose parameters are the fields of `model`."""

    def decorate(fn: Callable) -> Callable:
        fn.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\n{parameter_docs(model)}"
        return fn

    return decorate
