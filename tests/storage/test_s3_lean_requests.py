"""The lean requests (:mod:`drctl.storage.s3_lean`) against the real servers: listings give the
same keys and sizes as botocore's paginator, page by page, whatever the keys hold; PUTs and GETs
store and read what botocore does, one keep-alive connection after another request's answer."""

from __future__ import annotations

import pytest

from drctl.storage.base import BucketMissing
from drctl.storage.s3 import S3Storage

ODD_KEYS = [
    "status/a b/1.json",  # a space (sent back as '+' by encoding-type=url)
    "status/a+b/2.json",  # a plus
    "status/a%20b/3.json",  # a literal percent sequence
    "status/a&b<c>/4.json",  # XML's own characters
    "status/caf\u00e9/5.json",  # non-ASCII
    "status/x~y=z;/6.json",
]


@pytest.fixture(params=["seaweed_s3", "swift_s3"])
def target(request):
    return request.getfixturevalue(request.param)


def _botocore_list(storage: S3Storage, prefix: str) -> list[tuple[str, int]]:
    pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket, Prefix=prefix)
    return [(o["Key"], int(o["Size"])) for page in pages for o in page.get("Contents", ())]


def test_odd_keys_list_the_same_as_with_botocore(target) -> None:
    storage = target.storage("vault")
    assert storage._lean is not None, "path-style endpoints list on the lean path"
    for i, key in enumerate(ODD_KEYS):
        storage.put(key, b"x" * (i + 3))
    listed = [(o.key, o.size) for o in storage.list("status/")]
    # (SeaweedFS orders these odd names its own way: the order is the store's, the same either way)
    assert sorted(listed) == sorted((k, i + 3) for i, k in enumerate(ODD_KEYS))
    assert [(f"vault/{k}", n) for k, n in listed] == _botocore_list(storage, "vault/status/")


def test_pages_follow_their_continuation_tokens(target) -> None:
    storage = target.storage("paged")
    keys = [f"status/srv/{i:03d}.json" for i in range(7)]
    for k in keys:
        storage.put(k, b"{}")
    assert storage._lean is not None
    got, token, pages = [], None, 0
    while True:
        items, token = storage._lean.list_page(storage.bucket, "paged/status/", token, max_keys=3)
        got += [k for k, _ in items]
        pages += 1
        if token is None:
            break
    assert pages == 3 and got == [f"paged/{k}" for k in keys]


def test_a_missing_bucket_is_named(target) -> None:
    storage = S3Storage(target.bucket + "-gone", "", target.client())
    with pytest.raises(BucketMissing, match="-gone"):
        list(storage.list("status/"))


def test_lean_puts_and_gets_read_back_with_botocore_on_one_connection(target) -> None:
    import os

    storage = target.storage("lean")  # no retry wrapper: a request that fails is seen failing
    assert storage._lean is not None
    bodies = {"data/empty": b"", "data/small": b"x", "data/chunk": os.urandom(3 * 1024 * 1024 + 7)}
    first = None
    for key, body in bodies.items():  # an empty answer must not leave the connection half-read
        storage.put(key, body)
        first = first or storage._lean._local.conn
        assert storage.get(key) == body
    buf = memoryview(bytearray(4 * 1024 * 1024))
    for key, body in bodies.items():
        assert bytes(storage.get_into(key, buf)) == body
        got = storage.client.get_object(Bucket=storage.bucket, Key=f"lean/{key}")["Body"].read()
        assert got == body  # what botocore reads: the same object
    assert storage._lean._local.conn is first  # still the first connection, never dropped
