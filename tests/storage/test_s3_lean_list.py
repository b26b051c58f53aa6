"""The lean listing (``LeanGetter.list_page``, used by ``S3Storage.list``) against the real servers:
the same keys and sizes as botocore's paginator, page by page, whatever the keys hold."""

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
