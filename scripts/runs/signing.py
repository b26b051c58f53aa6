"""Tamper evidence for run reports: an Ed25519 signature over the summary JSON and the HTML page.

The operator's signing key is a PKCS#8 PEM file, mode 0600, at ``$DRCTL_REPORT_KEY_FILE`` or
``<state dir>/keys/report-signing.key``; it is generated on first use, and its public key is
exported beside it (``report-signing.pub``) so that anyone holding a copy can verify reports.

Signed message (length-prefixed so that no byte can move from one file to the other)::

    b"drctl-report-v1\\0" || u64be(len(summary.json)) || summary.json || u64be(len(report.html)) || report.html

``report.sig`` is a small JSON document with the key id, the SHA-256 of both files (only to say
which file changed) and the signature in hex. It is read strictly: any byte changed in it, in
``summary.json`` or in ``report.html`` makes :func:`verify` raise :class:`ReportTampered` (exit 13)
naming the file. Verification uses the operator's public key, never the one a report carries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from drctl.errors import EXIT_INTEGRITY, DrctlError, InvalidInput, LocalIOError
from drctl.input_files import loads_json

log = logging.getLogger(__name__)

SIG_FORMAT = "drctl-report-signature-v1"
_DOMAIN = b"drctl-report-v1\0"
KEY_ENV = "DRCTL_REPORT_KEY_FILE"


class ReportTampered(DrctlError):
    """A report does not match its signature."""

    exit_code = EXIT_INTEGRITY


class SigningKeyUnsafe(LocalIOError):
    """The report-signing key file is readable by other users."""


@dataclass(frozen=True)
class ReportFiles:
    """The three files of a stored report, with the names used in messages."""

    summary: bytes
    html: bytes
    signature: bytes
    summary_name: str = "summary.json"
    html_name: str = "report.html"
    signature_name: str = "report.sig"


# --- keys ---------------------------------------------------------------------------------------


def default_key_path(state_dir: Path) -> Path:
    env = os.environ.get(KEY_ENV)
    return Path(env).expanduser() if env else Path(state_dir) / "keys" / "report-signing.key"


def public_key_path(key_path: Path) -> Path:
    return key_path.with_suffix(".pub")


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The operator's signing key; created (0600, directory 0700) when absent."""
    path = Path(path)
    if path.exists():
        return load_private_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public_key_path(path).write_bytes(_public_pem(key.public_key()))
    except FileExistsError:  # another process created it first: use theirs
        return load_private_key(path)
    except OSError as e:
        raise LocalIOError(f"cannot create the report-signing key {path}: {e}") from e
    log.warning(
        "generated a new report-signing key %s (mode 0600, key id %s); its public key is %s: "
        "keep a copy of both, reports signed with it verify only with that public key",
        path,
        key_id(key.public_key()),
        public_key_path(path),
    )
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyUnsafe(
                f"report-signing key {path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):o}): run `chmod 600 {path}`"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise LocalIOError(f"cannot read the report-signing key {path}: {e}") from e
    except ValueError as e:
        raise InvalidInput(f"{path} is not a PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key file (PEM), or the public half of a private key file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LocalIOError(f"cannot read the report-verification key {path}: {e}") from e
    pub: PublicKeyTypes
    try:
        if b"PRIVATE KEY" in data:
            pub = load_private_key(path).public_key()
        else:
            pub = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise InvalidInput(f"{path} is not a PEM key: {e}") from e
    if not isinstance(pub, Ed25519PublicKey):
        raise InvalidInput(f"{path} is not an Ed25519 key")
    return pub


# --- sign / verify ---------------------------------------------------------------------------------


def signed_message(summary: bytes, html: bytes) -> bytes:
    return _DOMAIN + len(summary).to_bytes(8, "big") + summary + len(html).to_bytes(8, "big") + html


def _encode_sig(doc: dict[str, str]) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")


def sign(summary: bytes, html: bytes, key: Ed25519PrivateKey) -> bytes:
    """The content of ``report.sig`` for these two files."""
    sig = key.sign(signed_message(summary, html))
    return _encode_sig(
        {
            "format": SIG_FORMAT,
            "key_id": key_id(key.public_key()),
            "summary_sha256": hashlib.sha256(summary).hexdigest(),
            "report_sha256": hashlib.sha256(html).hexdigest(),
            "signature": sig.hex(),
        }
    )


def _parse_sig(files: ReportFiles) -> tuple[dict[str, str], bytes]:
    damaged = ReportTampered(
        f"{files.signature_name} is damaged or was edited: it is not a "
        f"{SIG_FORMAT} document; the report cannot be trusted"
    )
    try:
        doc = loads_json(files.signature.decode("ascii"))
        fields = ("format", "key_id", "summary_sha256", "report_sha256", "signature")
        if not isinstance(doc, dict) or sorted(doc) != sorted(fields) or doc["format"] != SIG_FORMAT:
            raise damaged
        sig = bytes.fromhex(doc["signature"])
        for k in ("summary_sha256", "report_sha256", "key_id"):
            bytes.fromhex(doc[k])
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise damaged from e
    # Strict: the file must be exactly what sign() writes (no equivalent spellings accepted).
    if _encode_sig(doc) != files.signature or sig.hex() != doc["signature"]:
        raise damaged
    return doc, sig


def verify(files: ReportFiles, public: Ed25519PublicKey) -> str:
    """Raise :class:`ReportTampered` naming the file at fault; return the key id on success."""
    doc, sig = _parse_sig(files)
    kid = key_id(public)
    if doc["key_id"] != kid:
        raise ReportTampered(
            f"{files.signature_name} was made with key {doc['key_id']}, not with the "
            f"operator's key {kid}: the report cannot be trusted (or verify with "
            f"--public-key of the key that signed it)"
        )
    changed = []
    if hashlib.sha256(files.summary).hexdigest() != doc["summary_sha256"]:
        changed.append(files.summary_name)
    if hashlib.sha256(files.html).hexdigest() != doc["report_sha256"]:
        changed.append(files.html_name)
    try:
        public.verify(sig, signed_message(files.summary, files.html))
    except InvalidSignature:
        pass
    else:
        if changed:  # the files are as signed, but the digests in report.sig were edited
            raise ReportTampered(
                f"{files.signature_name} was edited: its digests do not match the signed files"
            )
        return kid
    if changed:
        raise ReportTampered(
            f"{' and '.join(changed)} changed after the report was signed "
            f"(signature in {files.signature_name} does not match)"
        )
    raise ReportTampered(f"the signature in {files.signature_name} is not valid for this report")
