"""`selection.unit: object`: objects as the units selection ranks, frames as what gets labelled.

An object unit is a row of `Candidates` built from an object: its id, its file and frame, its
box size as width and height, its parent frame's image statistics, and its crop's embedding.
The strategies rank objects with the columns `label`, `score` and `probabilities`.

Labelling is by frame: a picked object's frame is labelled whole, so all of its objects count
as chosen from then on. With the default strategies, `select_objects` runs `herd_frames`: the
default's kernel coverage measured on the objects, each step picking a frame. With strategies
of one's own it picks in rounds: each round asks `select` for as many objects as frames are
still wanted (half as many, with a balance strategy), with the dataset's objects and every
object of the frames picked so far held as chosen (balance counts their labels as picked);
each new frame among the picks (in pick order) is taken until the budget is met or a round
brings no new frame.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from winnow.records import Candidates, ObjectPick, ObjectRows, Pick, Selection
from winnow.selection import SelectionConfig, nearest_distances, select

MAX_ROUNDS = 8
"""Rounds of `select_objects` (the last asks for every frame still wanted); most budgets are
met in two or three, in five or six when rounds are halved."""


def object_units(objects: ObjectRows, frames: Candidates | None = None) -> Candidates:
    """Objects as selection units (sample_id = object id; content hash = object id).

    Args:
        objects: The objects, embedded.
        frames: Their parent frames, for the image statistics (brightness, contrast,
            sharpness); NaN where a parent is not among them.
    """
    n = len(objects)
    stats = {
        name: np.full(n, np.nan, np.float32) for name in ("brightness", "contrast", "sharpness")
    }
    if frames is not None and len(frames):
        row_of = {sid: i for i, sid in enumerate(frames.sample_id)}
        rows = np.array([row_of.get(s, -1) for s in objects.sample_id], np.int64)
        hit = rows >= 0
        for name, values in stats.items():
            values[hit] = getattr(frames, name)[rows[hit]]
    return Candidates(
        sample_id=objects.object_id.astype(object),
        key=objects.key.astype(object),
        fingerprint=objects.fingerprint.astype(object),
        content_hash=objects.object_id.astype(object),
        frame_index=objects.frame_index.astype(np.int64),
        pts_seconds=objects.pts_seconds.astype(np.float64),
        width=np.round(objects.w).astype(np.int32),
        height=np.round(objects.h).astype(np.int32),
        **stats,
        embedding=objects.embedding,
        run_id=objects.run_id if len(objects.run_id) == n else np.full(n, "", dtype=object),
    )


def object_columns(objects: ObjectRows) -> dict[str, np.ndarray]:
    """`label`, `score` and `probabilities` (one vector per object, as a list of one)."""
    probs = np.empty(len(objects), dtype=object)
    probs[:] = [[p.tolist()] if len(p) else [] for p in objects.probabilities]
    return {
        "label": objects.label.astype(object),
        "score": objects.score.astype(np.float64),
        "probabilities": probs,
    }


def frame_probabilities(frames: Candidates, objects: ObjectRows) -> np.ndarray:
    """Per frame, the class-probability vectors of its objects (for `uncertainty` at unit frame)."""
    by_frame: dict[str, list[list[float]]] = {}
    for sid, p in zip(objects.sample_id, objects.probabilities, strict=True):
        if len(p):
            by_frame.setdefault(str(sid), []).append(p.tolist())
    out = np.empty(len(frames), dtype=object)
    out[:] = [by_frame.get(str(s), []) for s in frames.sample_id]
    return out


def frame_budget(config: SelectionConfig, n_frames: int) -> int | None:
    """Frames to label: `n_samples`, or `proportion` of the frames that have objects."""
    budgets = []
    if config.n_samples is not None:
        budgets.append(config.n_samples)
    if config.proportion is not None:
        budgets.append(max(1, round(config.proportion * n_frames)))
    return min(budgets) if budgets else None


def select_objects(
    objects: ObjectRows,
    frames: Candidates,
    *,
    held: ObjectRows,
    config: SelectionConfig,
    queries: np.ndarray | None = None,
    device: str = "auto",
) -> Selection:
    """Pick frames to label by their objects: herding over frames, or rounds of objects.

    With the default strategies and a frame budget, `herd_frames`. Otherwise the strategies
    rank objects in rounds until the frame budget is met (see the module's docstring).

    Args:
        objects: The candidate objects (embedded).
        frames: The candidate frames the objects lie on (other frames are never picked).
        held: Objects already chosen: those of the dataset's frames.
        config: The selection (its stopping rules count frames, `min_distance` objects).
        queries: As `select`.
        device: As `select`.

    Returns:
        A `Selection` whose picks are frames (rows of `frames`, each once, in the order their
        first object was picked) and whose `objects` are the picked objects; counts and
        measures are of objects.
    """
    dim = frames.embedding.shape[1] if frames.embedding.ndim == 2 else 0
    row_of = {sid: i for i, sid in enumerate(frames.sample_id)}
    objects = objects.on_frames(row_of)
    budget = frame_budget(config, len(set(objects.sample_id.tolist())))
    if budget is not None and uses_default_strategies(config) and len(objects):
        return herd_frames(
            objects, frames, held=held, budget=budget, seed=config.seed, device=device
        )
    units = object_units(objects, frames)
    columns = object_columns(objects)
    chosen_frames: list[str] = []
    frame_picks: list[Pick] = []
    object_picks: list[ObjectPick] = []
    first: Selection | None = None
    last: Selection | None = None
    held_emb = held.embedding.astype(np.float32).reshape(len(held), -1 if len(held) else dim)
    held_columns = object_columns(held)
    # Balance counts labels: in halving rounds it sees those of every object on the frames
    # taken so far, not only of the objects that brought them.
    halve = any(s.type == "balance" for s in config.strategies)
    for round_no in range(MAX_ROUNDS):
        want = None if budget is None else budget - len(chosen_frames)
        if want is not None and want <= 0:
            break
        if halve and want is not None and round_no < MAX_ROUNDS - 1:
            want = math.ceil(want / 2)
        taken = set(chosen_frames)
        open_rows = np.flatnonzero([s not in taken for s in objects.sample_id])
        if not len(open_rows):
            break
        closed = np.flatnonzero([s in taken for s in objects.sample_id])
        dataset = np.concatenate([held_emb, units.embedding[closed].astype(np.float32)])
        round_config = config.model_copy(update={"n_samples": want, "proportion": None})
        result = select(
            units.take(open_rows),
            dataset=dataset,
            config=round_config,
            columns={k: v[open_rows] for k, v in columns.items()},
            queries=queries,
            device=device,
            dataset_columns={
                k: np.concatenate([v, columns[k][closed]]) for k, v in held_columns.items()
            },
        )
        first = first or result
        last = result
        new = _take_frames(result, open_rows, objects, row_of, chosen_frames, want)
        frame_picks += new[0]
        object_picks += new[1]
        if not new[0] or want is None:
            break
    return _selection(first, last, frame_picks, object_picks, n_units=len(units))


def _take_frames(
    result: Selection,
    open_rows: np.ndarray,
    objects: ObjectRows,
    row_of: dict[str, int],
    chosen: list[str],
    want: int | None,
) -> tuple[list[Pick], list[ObjectPick]]:
    """The frames of a round's picks (new ones, in pick order, up to `want`) and their objects."""
    frames, picked = [], []
    boxes = objects.boxes()
    for p in result.picks:
        i = int(open_rows[p.index])
        sid = str(objects.sample_id[i])
        if sid not in chosen:
            if want is not None and len(frames) >= want:
                continue
            chosen.append(sid)
            label = str(objects.label[i])
            frames.append(
                dataclasses.replace(
                    p, sample_id=sid, index=row_of[sid], reason=f"{label}: {p.reason}"
                )
            )
        picked.append(_object_pick(objects, boxes, i, p.reason))
    return frames, picked


def _object_pick(objects: ObjectRows, boxes: np.ndarray, i: int, reason: str) -> ObjectPick:
    """Row `i` of the objects as a pick (`boxes`: `objects.boxes()`)."""
    return ObjectPick(
        object_id=str(objects.object_id[i]),
        sample_id=str(objects.sample_id[i]),
        key=str(objects.key[i]),
        frame_index=int(objects.frame_index[i]),
        box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
        label=str(objects.label[i]),
        score=float(objects.score[i]),
        reason=reason,
    )


def _selection(
    first: Selection | None,
    last: Selection | None,
    frames: list[Pick],
    objects: list[ObjectPick],
    *,
    n_units: int,
) -> Selection:
    if first is None or last is None:
        return Selection(picks=(), n_candidates=n_units)
    distances = [p.distance for p in frames if math.isfinite(p.distance)]
    return dataclasses.replace(
        last,
        picks=tuple(frames),
        objects=tuple(objects),
        n_candidates=first.n_candidates,
        n_removed_duplicates=first.n_removed_duplicates,
        n_removed_thresholds=first.n_removed_thresholds,
        coverage_before=first.coverage_before,
        mean_pick_distance=float(np.mean(distances)) if distances else float("nan"),
        mean_random_distance=first.mean_random_distance,
    )


# -- the object-level default: herding over frames --------------------------------------------

MAX_GAIN_CELLS = 50_000_000
"""Most (evaluation object × frame) kernel cells held at once; fewer evaluation rows above it."""


def uses_default_strategies(config: SelectionConfig) -> bool:
    """Whether the config's strategies are the default ones (then frame herding runs).

    Compared by value: a parameter form sends the defaults as given values.
    """
    return list(config.strategies) == list(SelectionConfig.model_fields["strategies"].default)


def herd_frames(
    objects: ObjectRows,
    frames: Candidates,
    *,
    held: ObjectRows,
    budget: int,
    seed: int = 0,
    scale: float = 1.0,
    device: str = "auto",
) -> Selection:
    """Kernel herding whose picks are frames (the object-level default).

    Each step labels the frame whose objects most raise how well the labelled objects
    represent all the candidate objects.

    # Algorithm: MaxHerding (the default strategy's kernel coverage, arXiv 2407.12212) with
    # groups. Evaluation rows E: the candidate objects (a seeded sample of `herding.EVAL_ROWS`
    # above it, fewer when E × frames would pass `MAX_GAIN_CELLS`). Gaussian kernel with σ
    # from `auto_bandwidth` (the k-center radius of the budget in objects: frames × the mean
    # objects per frame). cover(e) = max kernel of e to the held objects (the dataset's frames');
    # M(e, f) = max kernel of e to the objects of frame f (a scatter-max). Each step picks the
    # frame with the largest Σ_e max(0, M(e, f) − cover(e)), then cover = max(cover, M(·, f)).
    # The objective is monotone submodular: the greedy is within 1 − 1/e of the best set of
    # `budget` frames. Cost O(E × frames) a step.

    Args:
        objects: The candidate objects (embedded), each on a row of `frames`.
        frames: The candidate frames.
        held: Objects already labelled (those of the dataset's frames).
        budget: Frames to pick.
        seed: Seed of the evaluation sample.
        scale: Multiplier of the automatic bandwidth.
        device: Where the kernel is computed.

    Returns:
        A `Selection` of frames (rows of `frames`, in pick order) whose `objects` are every
        object on the picked frames, each with its own gain.
    """
    import torch

    from winnow.device import resolve_device
    from winnow.selection._distances import _nearest_sqdist
    from winnow.selection._herding import EVAL_ROWS, auto_bandwidth

    dev = resolve_device(device)
    x = torch.from_numpy(objects.embedding.astype(np.float32)).to(dev)
    fid, frame_ids = np.unique(objects.sample_id.astype(str), return_inverse=True)
    n_frames = len(fid)
    limit = max(256, min(EVAL_ROWS, MAX_GAIN_CELLS // max(1, n_frames)))
    rng = np.random.default_rng([seed, 31])
    rows = np.arange(len(x)) if len(x) <= limit else np.sort(rng.choice(len(x), limit, False))
    xe = x[torch.from_numpy(rows).to(dev)]
    held_emb = held.embedding.astype(np.float32).reshape(len(held), x.shape[1])
    d0 = _nearest_sqdist(x, (x * x).sum(1), held_emb)  # to the held objects, once
    per_frame = len(x) / max(1, n_frames)
    sigma = auto_bandwidth(x, d0, math.ceil(budget * per_frame), scale=scale, seed=seed)
    gamma = 1.0 / (2 * sigma * sigma)
    cover = torch.exp(-d0[torch.from_numpy(rows).to(dev)] * gamma)
    index = torch.from_numpy(frame_ids).to(dev)
    gains = torch.zeros(len(x), dtype=torch.float32, device=dev)  # each object's own gain
    best = torch.zeros((len(xe), n_frames), dtype=torch.float32, device=dev)
    for lo in range(0, len(x), 4096):
        k = torch.exp(-torch.cdist(xe, x[lo : lo + 4096]).square_() * gamma)
        gains[lo : lo + 4096] = (k - cover[:, None]).clamp_min_(0).sum(0)
        idx = index[lo : lo + 4096].expand(len(xe), -1)
        best.scatter_reduce_(1, idx, k, reduce="amax")
    chosen: list[int] = []
    frame_gain: list[float] = []
    for _ in range(min(budget, n_frames)):
        gain = (best - cover[:, None]).clamp_min_(0).sum(0)
        if chosen:
            gain[chosen] = -1.0
        j = int(torch.argmax(gain))
        chosen.append(j)
        frame_gain.append(float(gain[j]) / len(xe))
        cover = torch.maximum(cover, best[:, j])
    own = gains.cpu().numpy() / len(xe)
    result = _herded(objects, frames, fid, frame_ids, chosen, frame_gain, own)
    d_held = d0.sqrt().cpu().numpy() if len(held) else None
    return _with_measures(result, objects, d_held, frame_ids, chosen, seed=seed)


def _with_measures(
    result: Selection,
    objects: ObjectRows,
    d_held: np.ndarray | None,
    frame_ids: np.ndarray,
    chosen: list[int],
    *,
    seed: int,
) -> Selection:
    """The run's measures, over the candidate objects, as `select` gives them for units.

    Coverage radius before (to the held objects) and after (the picked frames' objects added);
    the picked frames' objects' mean distance to the held objects (without any: to the nearest
    object of another picked frame), and the same for as many random frames (seeded).
    `d_held`: each object's distance to the nearest held object (None: nothing held).
    """
    if not chosen:
        return result
    x = objects.embedding.astype(np.float32)
    on = np.isin(frame_ids, chosen)
    after = nearest_distances(x, x[on], device="cpu")
    if d_held is not None:
        after = np.minimum(d_held, after)

    def spread(picked: np.ndarray) -> float:
        rows = np.isin(frame_ids, picked)
        if d_held is not None:
            return float(d_held[rows].mean())
        if len(picked) < 2:
            return math.nan
        each = [nearest_distances(x[frame_ids == f], x[rows & (frame_ids != f)]) for f in picked]
        return float(np.concatenate(each).mean())

    rng = np.random.default_rng([seed, 1])
    baseline = rng.choice(int(frame_ids.max()) + 1, size=len(chosen), replace=False)
    return dataclasses.replace(
        result,
        coverage_before=float(d_held.max()) if d_held is not None else math.inf,
        coverage_after=float(after.max()),
        mean_pick_distance=spread(np.array(chosen)),
        mean_random_distance=spread(baseline),
    )


def _herded(
    objects: ObjectRows,
    frames: Candidates,
    fid: np.ndarray,
    frame_ids: np.ndarray,
    chosen: list[int],
    frame_gain: list[float],
    own_gain: np.ndarray,
) -> Selection:
    """The picked frames as a `Selection`, with every object on them as an `ObjectPick`.

    `fid`: the frames' sample ids; `frame_ids`: each object's frame, as a position in `fid`.
    """
    row_of = {sid: i for i, sid in enumerate(frames.sample_id)}
    boxes = objects.boxes()
    picks, picked = [], []
    for j, g in zip(chosen, frame_gain, strict=True):
        sid = str(fid[j])
        mine = np.flatnonzero(frame_ids == j)
        mine = mine[np.argsort(-own_gain[mine], kind="stable")]
        labels = ", ".join(str(objects.label[i]) for i in mine)
        reason = f"herding over objects: the frame's {len(mine)} objects ({labels}) add {g:.3f}"
        picks.append(
            Pick(sample_id=sid, index=row_of[sid], distance=math.nan, score=g, reason=reason)
        )
        own = "on a frame picked by herding over objects (own gain {:.3f})"
        picked += [_object_pick(objects, boxes, i, own.format(own_gain[i])) for i in mine]
    stop = "n_samples" if len(picks) else "exhausted"
    return Selection(
        picks=tuple(picks), n_candidates=len(objects), stop_reason=stop, objects=tuple(picked)
    )
