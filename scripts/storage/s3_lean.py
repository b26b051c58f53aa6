"""Lean signed requests for the hot paths: the restore's GETs (format §4: one GET per chunk,
thousands per restore), the backup's PUTs (one per new chunk) and listings (``S3Storage.list``;
``drctl status`` lists thousands of status records).

botocore spends ~1-2 ms of Python per request (parameter validation, endpoint rules, event hooks,
response parsing; a PUT also waits for ``Expect: 100-continue``): on a 2-vCPU machine that shares
its CPU with the object store, that is CPU the restore and the backup need for hashing, compression
and encryption. This module signs the request with botocore's own SigV4 signer (same credentials
chain, same region, the same SHA-256 of a PUT's payload) and sends it over one keep-alive
``http.client`` connection per thread, reading a GET's body straight into one buffer.

It is used only where it is equivalent to botocore: path-style addressing, no proxy variables,
and for https the CA bundle botocore verifies with (``AWS_CA_BUNDLE`` / ``ca_bundle``, else the
system's); never with verification turned off. Otherwise, or with ``DRCTL_S3_LEAN_GET=0`` (its
name from when only GETs took this path), :func:`lean_client` returns None and ``S3Storage`` keeps
botocore for every request.
Errors come back as the botocore exceptions ``drctl.storage.s3`` already translates, so the
messages and the retry decisions are the same on both paths.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

import botocore.exceptions as bce
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
TIMEOUT_S = 60.0  # the read timeout of the botocore client (make_client)


def lean_client(client: Any, addressing_style: str) -> LeanClient | None:
    """A lean client for ``client``'s endpoint, or None where botocore must stay (see module doc)."""
    if addressing_style != "path" or os.environ.get("DRCTL_S3_LEAN_GET", "1") == "0":
        return None
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    url = urlsplit(client.meta.endpoint_url or "")
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        return None
    tls = None
    if url.scheme == "https":
        # What botocore verifies with: True (system CAs) or a CA bundle path; False (no
        # verification) is left to botocore, never copied here.
        verify = getattr(getattr(getattr(client, "_endpoint", None), "http_session", None), "_verify", None)
        if verify is True:
            tls = ssl.create_default_context()
        elif isinstance(verify, str) and os.path.exists(verify):
            tls = ssl.create_default_context(cafile=verify)
        else:
            return None
    # The credentials botocore resolved from the standard chain (refreshable ones refresh on
    # get_frozen_credentials). A private attribute: if a botocore release renames it, keep botocore.
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is None or not hasattr(credentials, "get_frozen_credentials"):
        return None
    return LeanClient(
        url.scheme, url.hostname, url.port, client.meta.region_name or "us-east-1", credentials, tls
    )


class LeanClient:
    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        region: str,
        credentials: Any,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.scheme, self.host, self.port, self.region = scheme, host, port, region
        self.credentials, self.tls = credentials, tls
        default_port = 443 if scheme == "https" else 80
        self.netloc = host if port in (None, default_port) else f"{host}:{port}"
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_S, context=self.tls)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def get(self, bucket: str, key: str, byte_range: tuple[int, int] | None = None) -> bytes | bytearray:
        """The object's bytes (``[start, end)`` if given). Raises bce.ClientError for an S3 error
        response and bce.EndpointConnectionError / bce.ReadTimeoutError for transport failures."""
        path = _object_path(bucket, key)
        headers = {}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        data = self._request("GET", path, headers, "GetObject")
        assert not isinstance(data, memoryview)  # only a body read into a given buffer is a view
        return data

    def put(self, bucket: str, key: str, data: bytes | bytearray | memoryview) -> None:
        """PutObject of ``data``, signed over its SHA-256 as botocore signs a body it holds (no
        Object Lock headers: a retained write stays with botocore)."""
        self._request(
            "PUT", _object_path(bucket, key), {"Content-Length": str(len(data))}, "PutObject", body=data
        )

    def get_into(self, bucket: str, key: str, buf: memoryview) -> memoryview:
        """:meth:`get` of the whole object, its body read straight into ``buf`` when it fits."""
        return memoryview(self._request("GET", _object_path(bucket, key), {}, "GetObject", into=buf))

    def list_page(
        self, bucket: str, prefix: str, token: str | None = None, *, max_keys: int | None = None
    ) -> tuple[list[tuple[str, int]], str | None]:
        """One page of ListObjectsV2 under ``prefix``: (key, size) in key order and the token of the
        next page (None on the last). Keys come URL-encoded (``encoding-type=url``, as botocore asks),
        so that any key survives XML. Parsed with ElementTree: botocore's parser costs ~60 us of
        Python per key, which is most of the CPU of listing thousands of small objects."""
        params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            params["continuation-token"] = token
        if max_keys:
            params["max-keys"] = str(max_keys)
        # SigV4 signs the query exactly as sent: every name and value encoded, sorted by name.
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
        )
        body = self._request("GET", "/" + quote(bucket, safe="") + "?" + query, {}, "ListObjectsV2")
        try:
            root = ET.fromstring(bytes(body))
        except ET.ParseError as e:
            raise bce.ClientError(
                {"Error": {"Code": "InvalidListing", "Message": f"unreadable listing: {e}"}}, "ListObjectsV2"
            ) from e
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        items = [
            (unquote_plus(c.findtext(f"{ns}Key") or ""), int(c.findtext(f"{ns}Size") or 0))
            for c in root.iter(f"{ns}Contents")
        ]
        truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
        return items, (root.findtext(f"{ns}NextContinuationToken") or None) if truncated else None

    def _request(
        self,
        method: str,
        path_query: str,
        headers: dict[str, str],
        operation: str,
        *,
        body: bytes | bytearray | memoryview | None = None,
        into: memoryview | None = None,
    ) -> bytes | bytearray | memoryview:
        """One signed request (GET or PUT, both idempotent); the response body."""
        headers = {"Host": self.netloc, **headers}
        request = AWSRequest(
            method=method, url=f"{self.scheme}://{self.netloc}{path_query}", headers=headers, data=body
        )
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        endpoint = f"{self.scheme}://{self.netloc}"
        for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile: reconnect once
            conn = self._connection()
            try:
                conn.request(method, path_query, body=body, headers=dict(request.headers.items()))
                resp = conn.getresponse()
                if resp.status not in (200, 206):
                    raise _client_error(resp.status, resp.read(), operation)
                return _read_body(resp, into)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._drop_connection()
                if attempt == 2:
                    raise bce.EndpointConnectionError(endpoint_url=endpoint, error=e) from e
            except TimeoutError as e:
                self._drop_connection()
                raise bce.ReadTimeoutError(endpoint_url=endpoint, error=e) from e
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                raise bce.EndpointConnectionError(endpoint_url=endpoint, error=e) from e
        raise AssertionError("unreachable")  # pragma: no cover


def _object_path(bucket: str, key: str) -> str:
    return "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")


def _read_body(
    resp: http.client.HTTPResponse, into: memoryview | None = None
) -> bytes | bytearray | memoryview:
    """The body: into ``into`` when given and large enough (a view of it), else a new buffer."""
    length = resp.getheader("Content-Length")
    if length is None:
        return resp.read()
    n = int(length)
    if n == 0:
        return resp.read()  # b"", and the response is complete: the connection serves the next request
    fits = into is not None and n <= len(into)
    buf = into if into is not None and fits else bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = resp.readinto(view[got:n])
        if not k:
            raise http.client.IncompleteRead(bytes(view[:got]), n - got)
        got += k
    if fits:
        return view[:n]
    return bytes(buf) if n < 65536 else buf  # bytearray: no copy of a chunk-sized body


def _client_error(status: int, body: bytes, operation: str = "GetObject") -> bce.ClientError:
    code, message = str(status), ""
    try:
        root = ET.fromstring(body)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or ""
    except ET.ParseError:
        pass
    return bce.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )
