"""Pulumi's passphrase secrets provider, as a pure format: read and write the values that
``pulumi config set --secret`` puts in a stack file, without the Pulumi CLI.

Format (checked against pulumi/pulumi ``pkg/secrets/passphrase/manager.go`` and
``sdk/go/common/resource/config/crypt.go``):

- key = PBKDF2-HMAC-SHA256(passphrase, salt, 1,000,000 iterations, 32 bytes); salt is 8 random bytes.
- a value is ``v1:<base64 nonce>:<base64 ciphertext>``: AES-256-GCM, a fresh 12-byte nonce, no
  associated data; the ciphertext carries the 16-byte tag at its end (Go's ``Seal``).
- the stack file's ``encryptionsalt`` is ``v1:<base64 salt>:<value>`` where ``<value>`` encrypts the
  word ``pulumi``; opening it is how a wrong passphrase is told apart from a damaged value.
- the passphrase comes from ``PULUMI_CONFIG_PASSPHRASE`` (even empty), else from the file named by
  ``PULUMI_CONFIG_PASSPHRASE_FILE`` (surrounding whitespace stripped).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drctl.errors import DrctlError, InvalidInput

KDF_ITERATIONS = 1_000_000
KEY_BYTES = 32
SALT_BYTES = 8
NONCE_BYTES = 12
_CHECK_WORD = "pulumi"


class WrongPassphrase(DrctlError):
    """The passphrase does not open the stack's secrets."""

    exit_code = 1


class SecretValueInvalid(InvalidInput):
    """A ``secure:`` value of the stack file is malformed or was altered."""


@lru_cache(maxsize=8)
def derive_key(passphrase: str, salt: bytes) -> bytes:
    """The AES-256 key of a stack. Cached: one derivation costs about a second by design."""
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8"), salt, KDF_ITERATIONS, KEY_BYTES)


def encrypt_value(key: bytes, plaintext: str) -> str:
    """``v1:<nonce>:<ciphertext>`` exactly as the Pulumi CLI writes it."""
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(ct).decode()}"


def decrypt_value(key: bytes, value: str) -> str:
    """Open a ``v1:`` value. Raises :class:`InvalidTag` when the key is wrong or the value altered,
    :class:`SecretValueInvalid` when it is not a ``v1`` value at all."""
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != "v1":
        raise SecretValueInvalid(f"not a Pulumi v1 secret value: {value[:12]!r}...")
    try:
        nonce = base64.b64decode(parts[1], validate=True)
        ct = base64.b64decode(parts[2], validate=True)
    except binascii.Error as e:
        raise SecretValueInvalid("a secret value is not valid base64") from e
    if len(nonce) != NONCE_BYTES:
        raise SecretValueInvalid("a secret value has a nonce of the wrong size")
    return AESGCM(key).decrypt(nonce, ct, None).decode("utf-8")


@dataclass(frozen=True)
class StackCrypter:
    """The opened secrets of one stack file: its ``encryptionsalt`` and the derived key."""

    encryption_salt: str
    key: bytes = field(repr=False)

    def encrypt(self, plaintext: str) -> str:
        return encrypt_value(self.key, plaintext)

    def decrypt(self, value: str, *, where: str = "stack file") -> str:
        try:
            return decrypt_value(self.key, value)
        except InvalidTag as e:
            # The passphrase already opened the salt check: this value itself was altered.
            raise SecretValueInvalid(
                f"{where}: a secure value fails its integrity check (altered or copied from another "
                "stack); set it again with `drctl stack set-secret`"
            ) from e


def new_encryption_salt(passphrase: str) -> StackCrypter:
    """A fresh salt for a stack file that has none yet (what ``pulumi stack init`` does)."""
    salt = os.urandom(SALT_BYTES)
    key = derive_key(passphrase, salt)
    state = f"v1:{base64.b64encode(salt).decode()}:{encrypt_value(key, _CHECK_WORD)}"
    return StackCrypter(encryption_salt=state, key=key)


def open_encryption_salt(passphrase: str, state: str, *, where: str) -> StackCrypter:
    """Check ``passphrase`` against a stack's ``encryptionsalt`` and return the crypter.

    ``where`` names the stack file in error messages."""
    parts = state.split(":", 2)
    if len(parts) != 3 or parts[0] != "v1":
        raise SecretValueInvalid(f"{where}: encryptionsalt is not a Pulumi v1 passphrase state")
    try:
        salt = base64.b64decode(parts[1], validate=True)
    except binascii.Error as e:
        raise SecretValueInvalid(f"{where}: encryptionsalt has a salt that is not base64") from e
    key = derive_key(passphrase, salt)
    try:
        ok = decrypt_value(key, parts[2]) == _CHECK_WORD
    except InvalidTag:
        ok = False
    if not ok:
        raise WrongPassphrase(
            f"{where}: the passphrase does not open this stack's secrets; set PULUMI_CONFIG_PASSPHRASE "
            "or PULUMI_CONFIG_PASSPHRASE_FILE to the passphrase the stack was created with"
        )
    return StackCrypter(encryption_salt=state, key=key)
