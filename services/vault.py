"""Encryption of secrets at rest (camera passwords), keyed by IOC_SECRET_KEY."""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.errors import ConfigError


class Vault:
    """Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from the deployment secret."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ConfigError("IOC_SECRET_KEY must be at least 16 characters")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"commune-ioc/credentials").derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken as err:
            raise ConfigError("a stored credential does not decrypt: IOC_SECRET_KEY changed?") from err
