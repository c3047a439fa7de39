"""What a fan-out tells the run: the shards its children staged, and one line for people."""

from __future__ import annotations

from winnow.records import FileRef, Shard
from winnow.scale import FanOut, Group, GroupResult


def _shard(i: int) -> Shard:
    return Shard(i, f"s{i}", (FileRef(f"v{i}.mp4", f"fp{i}", 10, "video"),))


def test_a_fan_out_counts_every_shard_its_children_staged_and_names_their_workers():
    s = [_shard(i) for i in range(5)]
    out = FanOut(
        # Round 0: the first child was killed after staging s0 (it wrote no result); round 1
        # gave s1 and s2 to a new child, which staged s1 only and ended; s2 is left over.
        groups=[Group("r0-000-a", (s[0], s[1], s[2])), Group("r0-001-b", (s[3], s[4]))]
        + [Group("r1-000-c", (s[1], s[2]))],
        failed={"r0-000-a": "CRASHED: killed"},
        rounds=2,
        missing=[s[2]],
        results=[
            GroupResult("r0-001-b", host="gpu-1", pid=21, ppid=20, staged=["s3", "s4"]),
            GroupResult("r1-000-c", host="gpu-2", pid=31, ppid=30, staged=["s1"]),
        ],
    )
    scaled = out.scaled_out()
    assert scaled.staged == {"s0", "s1", "s3", "s4"}  # s0 too, though its child wrote no result
    assert scaled.text == (
        "3 child runs in 2 rounds on 2 workers (gpu-1, gpu-2); 1 did not finish; "
        "1 shards left to this run"
    )
