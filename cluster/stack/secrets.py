"""The local stack's secrets: a JWT signing secret and a master key, generated once into the
state dir (mode 0600) when the settings give none, so `make run` is secure without setup and
`esb tokens create` signs with the same secret the API checks.

>>> import tempfile
>>> s = with_local_secrets(Settings(esb_state_dir=Path(tempfile.mkdtemp())))
>>> len(s.jwt_secret_key.get_secret_value()) >= 32, s.esb_master_key_file.name
(True, 'master.key')
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from cluster.settings import Settings

SECRETS_DIR = "secrets"
MASTER_KEY_FILE = "master.key"


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The file's text, writing `make()` first when it does not exist (never overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(make() + "\n")
    return path.read_text().strip()


def local_master_key_file(settings: Settings) -> Path:
    """Where the local stack keeps its generated master key."""
    return settings.esb_state_dir.resolve() / SECRETS_DIR / MASTER_KEY_FILE


def with_local_secrets(settings: Settings) -> Settings:
    """`settings` with a JWT secret (HS* only) and a master key file filled in when unset."""
    folder = settings.esb_state_dir.resolve() / SECRETS_DIR
    update: dict[str, object] = {}
    if settings.jwt_secret_key is None and settings.jwt_algorithm.startswith("HS"):
        update["jwt_secret_key"] = SecretStr(
            _read_or_create(folder / "jwt_secret", lambda: secrets.token_urlsafe(48))
        )
    if settings.esb_master_key is None and settings.esb_master_key_file is None:
        path = local_master_key_file(settings)
        _read_or_create(path, lambda: base64.b64encode(os.urandom(32)).decode())
        update["esb_master_key_file"] = path
    return settings.model_copy(update=update) if update else settings
