"""When the restore's lean GET is used instead of botocore, and how its errors read (the transport
itself is exercised against SeaweedFS and Swift by the storage contract and S3 tests)."""

from __future__ import annotations

import pytest

from drctl.storage.s3_client import make_client
from drctl.storage.s3_lean import _client_error, lean_client


@pytest.fixture
def env(monkeypatch):
    for var in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "AWS_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "DRCTL_S3_LEAN_GET",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    return monkeypatch


def _client(**kw):
    return make_client(endpoint_url=kw.pop("endpoint_url", "http://127.0.0.1:8333"), **kw)


def test_path_style_endpoint_uses_the_lean_get(env):
    client = lean_client(_client(), "path")
    assert client is not None and client.netloc == "127.0.0.1:8333" and client.scheme == "http"


@pytest.mark.parametrize("var, value", [("HTTPS_PROXY", "http://proxy:3128"), ("DRCTL_S3_LEAN_GET", "0")])
def test_proxies_and_the_switch_keep_botocore(env, var, value):
    env.setenv(var, value)
    assert lean_client(_client(), "path") is None


def test_https_verifies_with_botocores_ca_bundle_and_never_without_verification(env, tmp_path):
    import ssl

    import certifi  # a CA bundle file that exists wherever openstacksdk/requests are installed

    env.setenv("AWS_CA_BUNDLE", certifi.where())
    client = lean_client(_client(endpoint_url="https://s3.example.invalid"), "path")
    assert client is not None and client.tls.verify_mode == ssl.CERT_REQUIRED and client.tls.check_hostname
    env.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    assert lean_client(_client(endpoint_url="https://s3.example.invalid"), "path") is None
    env.delenv("AWS_CA_BUNDLE")
    import boto3

    insecure = boto3.session.Session().client(
        "s3", endpoint_url="https://s3.example.invalid", verify=False, region_name="us-east-1"
    )
    assert lean_client(insecure, "path") is None


def test_virtual_hosted_addressing_keeps_botocore(env):
    assert lean_client(_client(), "virtual") is None


def test_s3_error_bodies_become_the_codes_the_backend_translates():
    e = _client_error(
        404, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"
    )
    assert e.response["Error"] == {"Code": "NoSuchKey", "Message": "gone"}
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert _client_error(503, b"not xml").response["Error"]["Code"] == "503"
