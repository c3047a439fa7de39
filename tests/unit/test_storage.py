"""The ObjectStore contract, run on the local backend and on S3 over HTTP (moto's server)."""

from __future__ import annotations

import os
import threading
import urllib.request
from pathlib import Path

import pytest

from winnow.errors import ConfigError, NotFound, StorageError
from winnow.storage import (
    LocalStore,
    S3Options,
    S3Store,
    open_store,
    read_url,
    relative_prefix,
    sibling_url,
)


def test_put_get_list_exists_delete(store_url, open_test_store):
    store = open_test_store(store_url)
    store.put("b/2.bin", b"two")
    store.put("a.bin", b"one")
    store.put("b/c/3.bin", b"three")
    assert store.get("a.bin") == b"one"
    infos = list(store.list())
    assert [i.key for i in infos] == ["a.bin", "b/2.bin", "b/c/3.bin"]
    assert [i.size_bytes for i in infos] == [3, 3, 5]
    assert all(i.fingerprint.endswith(f":{i.size_bytes}") for i in infos)
    assert [i.key for i in store.list("b")] == ["b/2.bin", "b/c/3.bin"]
    assert list(store.list("nope")) == []
    assert store.exists("b/2.bin") and not store.exists("b/9.bin")
    store.delete(["b/2.bin", "missing.bin"])
    assert not store.exists("b/2.bin")
    with pytest.raises(NotFound):
        store.get("b/2.bin")


def test_prefix_lists_a_folder_not_a_name_prefix(store_url, open_test_store):
    store = open_test_store(store_url)
    store.put("ab/x.bin", b"1")
    store.put("a/y.bin", b"2")
    assert [i.key for i in store.list("a")] == ["a/y.bin"]


def test_replacing_an_object_changes_its_fingerprint(store_url, open_test_store):
    store = open_test_store(store_url)
    store.put("f.bin", b"first")
    before = next(iter(store.list())).fingerprint
    store.put("f.bin", b"second!")
    after = next(iter(store.list())).fingerprint
    assert before != after
    assert store.get("f.bin") == b"second!"


def test_put_if_absent_creates_once(store_url, open_test_store):
    store = open_test_store(store_url)
    assert store.put_if_absent("v/1.json", b"winner") is True
    assert store.put_if_absent("v/1.json", b"loser") is False
    assert store.get("v/1.json") == b"winner"


def test_put_if_absent_races_have_exactly_one_winner(store_url, open_test_store):
    store = open_test_store(store_url)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        results.append(store.put_if_absent("race.json", f"writer {i}".encode()))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.get("race.json").startswith(b"writer ")


def test_put_from_a_file_and_local_copy(store_url, open_test_store, tmp_path):
    store = open_test_store(store_url)
    src = tmp_path / "big.bin"
    payload = bytes(range(256)) * 4096
    src.write_bytes(payload)
    store.put("media/big.bin", src)
    with store.local_copy("media/big.bin") as path:
        assert Path(path).read_bytes() == payload
        copy_path = Path(path)
    if store_url.startswith("s3://"):
        assert not copy_path.exists()  # the temporary copy is removed


def test_child_store_is_rooted_below(store_url, open_test_store):
    store = open_test_store(store_url)
    child = store.child("pool")
    child.put("x.json", b"{}")
    assert store.get("pool/x.json") == b"{}"
    assert [i.key for i in child.list()] == ["x.json"]


@pytest.mark.parametrize(
    ("key", "match"),
    [("../escape", "'..'"), ("/abs", "relative"), ("a/../../b", "'..'"), ("", "relative")],
)
def test_keys_cannot_escape_the_root(store_url, open_test_store, key, match):
    store = open_test_store(store_url)
    with pytest.raises(ConfigError, match=match):
        store.put(key, b"x")


def test_presign_gives_a_link_that_opens(store_url, open_test_store):
    store = open_test_store(store_url)
    store.put("doc/report.html", b"<p>hi</p>")
    url = store.presign("doc/report.html")
    with urllib.request.urlopen(url) as resp:  # noqa: S310 - file:// or the local moto server
        assert resp.read() == b"<p>hi</p>"
    assert "testing-secret-key" not in url


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        list(LocalStore(tmp_path / "nope").list())


def test_missing_bucket_is_a_clear_error(s3_options):
    store = S3Store("no-such-bucket-here", "raw", s3_options)
    with pytest.raises(NotFound, match="bucket 'no-such-bucket-here' does not exist"):
        list(store.list())


def test_unreachable_endpoint_fails_once_with_the_endpoint_named():
    options = S3Options(endpoint_url="http://127.0.0.1:9", region="us-east-1", max_attempts=1)
    with pytest.raises(StorageError, match=r"cannot connect to http://127.0.0.1:9"):
        list(S3Store("bucket", "raw", options).list())


def test_repr_of_options_hides_secrets():
    options = S3Options(
        access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t", session_token="tok"
    )
    text = repr(options) + repr(S3Store("b", "p", options))
    assert "s3cr3t" not in text and "AKIAEXAMPLE" not in text and "tok'" not in text


def test_open_store_and_url_helpers(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://bucket/raw/cam")
    assert isinstance(s3, S3Store) and s3.bucket == "bucket" and s3.prefix == "raw/cam"
    with pytest.raises(ConfigError, match="unsupported"):
        open_store("gs://bucket/x")
    assert sibling_url("s3://b/raw", ".winnow") == "s3://b/.winnow"
    assert sibling_url("s3://b", ".winnow") == "s3://b/.winnow"
    assert sibling_url(str(tmp_path / "raw"), ".winnow") == str(tmp_path / ".winnow")
    assert relative_prefix(open_store("s3://b"), open_store("s3://b/.winnow")) == ".winnow/"
    assert relative_prefix(open_store("s3://b/raw"), open_store("s3://b/out")) is None
    assert relative_prefix(LocalStore(tmp_path), LocalStore(tmp_path / "o")) == "o/"


def test_read_url_reads_one_object(store_url, open_test_store, s3_options):
    store = open_test_store(store_url)
    store.put("lists/relevant.txt", b"cam1/\n")
    assert read_url(store.url_for("lists/relevant.txt"), s3_options) == b"cam1/\n"


def test_s3_links_are_plain_urls_unless_presigning_is_asked_for(s3_bucket, s3_endpoint):
    plain = S3Store(s3_bucket, "out", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    assert plain.link("tags/t/report.html") == f"s3://{s3_bucket}/out/tags/t/report.html"
    signed = S3Store(
        s3_bucket,
        "out",
        S3Options(
            endpoint_url=s3_endpoint, region="us-east-1", presign_links=True, presign_expires_s=600
        ),
    )
    link = signed.link("tags/t/report.html")
    assert link.startswith(f"{s3_endpoint}/{s3_bucket}/out/tags/t/report.html?")
    assert "Expires=" in link or "X-Amz-Expires=600" in link


@pytest.mark.slow
def test_s3_listing_paginates_past_1000_keys(s3_bucket, s3_options):
    from concurrent.futures import ThreadPoolExecutor

    store = S3Store(s3_bucket, "many", s3_options)
    keys = [f"d{i % 7}/k{i:05d}.jpg" for i in range(1_234)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), keys))
    listed = [i.key for i in store.list()]
    assert listed == sorted(keys)


def test_large_files_go_up_as_multipart_uploads(s3_bucket, s3_options, tmp_path, monkeypatch):
    import boto3

    import winnow.storage as storage

    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 << 20)
    monkeypatch.setattr(storage, "MULTIPART_CHUNK", 5 << 20)
    big = tmp_path / "big.mp4"
    big.write_bytes(bytes(range(256)) * (11 << 12))  # 11 MiB
    store = S3Store(s3_bucket, "up", s3_options)
    store.put("big.mp4", big)
    client = boto3.client("s3", endpoint_url=s3_options.endpoint_url, region_name="us-east-1")
    etag = client.head_object(Bucket=s3_bucket, Key="up/big.mp4")["ETag"].strip('"')
    assert etag.endswith("-3")  # three parts
    with store.local_copy("big.mp4") as path:
        assert path.read_bytes() == big.read_bytes()


def test_a_same_size_rewrite_changes_the_fingerprint(store_url, open_test_store):
    store = open_test_store(store_url)
    store.put("f.bin", b"first!")
    before = next(iter(store.list())).fingerprint
    if isinstance(store, LocalStore):
        path = store.root / "f.bin"
        mtime_ns = path.stat().st_mtime_ns
        path.write_bytes(b"second")
        os.utime(path, ns=(mtime_ns + 1_000_000_000, mtime_ns + 1_000_000_000))
    else:
        store.put("f.bin", b"second")
    after = next(iter(store.list()))
    assert after.size_bytes == 6 and after.fingerprint != before


def test_local_put_if_absent_is_atomic_when_both_writers_publish_at_once(tmp_path, monkeypatch):
    """Both writers are held at the publishing step (link/replace/rename of the target) until
    both have arrived, so a check-then-act implementation would let both win."""
    store = LocalStore(tmp_path / "store")
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    inside = {"now": 0, "peak": 0}

    def held(real):
        def publish(src, dst, *args, **kwargs):
            if Path(dst).name != "v1.json":
                return real(src, dst, *args, **kwargs)
            with lock:
                inside["now"] += 1
                inside["peak"] = max(inside["peak"], inside["now"])
            try:
                barrier.wait()  # neither publishes before the other is here too
                return real(src, dst, *args, **kwargs)
            finally:
                with lock:
                    inside["now"] -= 1

        return publish

    for name in ("link", "replace", "rename"):
        monkeypatch.setattr(os, name, held(getattr(os, name)))
    results: dict[int, bool | BaseException] = {}

    def attempt(i: int) -> None:
        try:
            results[i] = store.put_if_absent("versions/v1.json", f"writer {i}".encode())
        except BaseException as exc:  # noqa: BLE001 - reported by the asserts below
            results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert inside["peak"] == 2, f"the writers never overlapped: {results}"
    assert sorted(results.values()) == [False, True], results
    winner = next(i for i, won in results.items() if won is True)
    assert store.get("versions/v1.json") == f"writer {winner}".encode()
    assert [i.key for i in store.list()] == ["versions/v1.json"]  # no temporary file left


def test_listing_is_in_key_order_with_folders_sorted_as_prefixes(store_url, open_test_store):
    store = open_test_store(store_url)
    keys = ["a/x.bin", "a-b.bin", "a.c.bin", "b.bin"]
    for k in keys:
        store.put(k, b"1")
    assert [i.key for i in store.list()] == sorted(keys)  # "a-b" < "a.c" < "a/x", as S3 lists


def test_leftover_temporary_files_are_not_listed(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put("d/a.bin", b"1")
    (tmp_path / "store/d/.winnow-tmp-0123").write_bytes(b"torn")
    assert [i.key for i in store.list()] == ["d/a.bin"]


def test_a_too_long_key_is_measured_where_the_limit_applies():
    from winnow.storage import MAX_KEY_BYTES, key_problem

    key = "/".join(["d" * 200] * 4) + "/" + "v" * 187 + ".jpg"  # 995 bytes below the source
    assert len(key.encode()) == 995
    assert key_problem(key) == (
        f"its key is 995 bytes long after the source prefix (at most {MAX_KEY_BYTES}, leaving "
        "room for the output names made from it)"
    )
