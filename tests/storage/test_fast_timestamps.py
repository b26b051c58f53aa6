"""``make_client(fast_timestamps=True)``: the same times as botocore's parser, parsed faster."""

from __future__ import annotations

import botocore.utils
import pytest

from drctl.storage.s3_client import _parse_timestamp


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T04:21:15.123Z",
        "2026-11-30T04:21:15Z",
        "2026-11-30T04:21:15+02:00",
        "Mon, 30 Nov 2026 04:21:15 GMT",
    ],
)
def test_fast_timestamps_match_botocore(text: str) -> None:
    assert _parse_timestamp(text) == botocore.utils.parse_timestamp(text)
    assert _parse_timestamp(text).tzinfo is not None
