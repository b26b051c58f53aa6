"""A stand-in for an OpenStack cloud's HTTP API on 127.0.0.1 (keystone v3, compute, image),
answering canned responses, so that openstacksdk runs for real down to its HTTP requests.

Not a test module: imported by tests/activation/test_cloud_errors.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any, dict[str, str]]


class OpenStackStub:
    """``routes[(method, path prefix)] = (status, json body, headers)``; the longest matching
    prefix answers, anything else is 404. ``requests`` records (method, path)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Answer] = {}
        # The token's catalog: service type -> path of its endpoint on this stub.
        self.services: dict[str, str] = {"compute": "/compute/v2.1", "image": "/image"}
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str, bytes]] = []  # (method, path, request body)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append((self.command, self.path))
                stub.bodies.append((self.command, self.path, body))
                status, body, headers = stub.answer(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str) -> Answer:
        matches = [
            (prefix, a) for (m, prefix), a in self.routes.items() if m == method and path.startswith(prefix)
        ]
        if not matches:
            return 404, {"error": {"message": f"{method} {path}: not found"}}, {}
        return max(matches, key=lambda pa: len(pa[0]))[1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- a working cloud, piece by piece ---------------------------------------------------------

    def serve_auth(self) -> None:
        """Keystone issues a token whose catalog points compute and image at this stub."""
        self.routes[("POST", "/v3/auth/tokens")] = (201, self._token(), {"X-Subject-Token": "stub-token"})
        self.routes[("GET", "/compute/v2.1")] = (
            200,
            {
                "version": {
                    "id": "v2.1",
                    "status": "CURRENT",
                    "version": "2.79",
                    "min_version": "2.1",
                    "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/"}],
                }
            },
            {},
        )
        self.routes[("GET", "/image")] = (
            200,
            {
                "versions": [
                    {
                        "id": "v2.16",
                        "status": "CURRENT",
                        "links": [{"rel": "self", "href": f"{self.url}/image/v2/"}],
                    }
                ]
            },
            {},
        )

    def _token(self) -> dict[str, Any]:
        def service(kind: str, path: str) -> dict[str, Any]:
            endpoint = {"id": kind, "interface": "public", "region": "RegionOne", "region_id": "RegionOne"}
            return {
                "type": kind,
                "id": kind,
                "name": kind,
                "endpoints": [{**endpoint, "url": self.url + path}],
            }

        domain = {"id": "default", "name": "Default"}
        return {
            "token": {
                "methods": ["password"],
                "expires_at": "2099-01-01T00:00:00.000000Z",
                "project": {"id": "p", "name": "demo", "domain": domain},
                "user": {"id": "u", "name": "operator", "domain": domain},
                "roles": [{"id": "r", "name": "member"}],
                "catalog": [service(kind, path) for kind, path in self.services.items()],
            }
        }

    def connect(self, auth_url: str | None = None) -> Any:
        """An openstacksdk Connection to this stub (or to ``auth_url``), ignoring the
        environment and clouds.yaml."""
        import openstack

        return openstack.connect(
            auth_url=auth_url or f"{self.url}/v3",
            username="operator",
            password="stub-password",
            project_name="demo",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
            load_yaml_config=False,
            load_envvars=False,
        )
