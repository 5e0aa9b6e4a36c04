"""`esb keys ...`: operator commands for the encryption at rest of `encrypted: true` streams.

    esb keys new-master --out new.key              # a fresh master key, base64, mode 0600
    esb keys rotate-master --new-key-file new.key  # rewrap every tenant's data keys under it
    esb keys delete-tenant acme --yes              # crypto-shredding: acme's data is gone

rotate-master first writes a key file holding the old and new master keys (current: new) over
ESB_MASTER_KEY_FILE, or to `--out`, then rewraps. Event ciphertexts are untouched, so old
events stay readable; processes that load that file can unwrap every data key. Running
processes keep using their cached keys; restart them so they load the new file.

delete-tenant replaces each of the tenant's data keys by a tombstone: its encrypted events
answer KeyDeleted (410) from then on (in other running processes once their key cache, 60 s,
expires). New events of the tenant get a fresh data key.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from cluster.errors import InvalidInput
from cluster.security.encryption import KeyRing, MasterKey
from cluster.security.event_crypto import keyring_from
from cluster.services.streaming import check_identifier
from cluster.settings import Settings
from cluster.stack.secrets import local_master_key_file

__all__ = ["delete_tenant", "execute", "register", "rotate_master"]


def write_secret(path: Path, text: str, *, replace: bool) -> None:
    """Write `text` readable by the owner only; atomically replacing `path` when allowed."""
    path = path.resolve()
    if path.exists() and not replace:
        raise InvalidInput(f"{path} exists; not overwriting a key")
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {exc}") from None


def rotate_master(ring: KeyRing, new_key_file: Path, key_file: Path) -> int:
    """Make the key in `new_key_file` the current master: write `key_file` with every master
    key (before rewrapping, so no data key is ever wrapped by a key no file holds), then rewrap
    every tenant's data keys. Answers how many were rewrapped."""
    try:
        new = MasterKey.from_base64(new_key_file.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {new_key_file}: {exc}") from None
    write_secret(key_file, ring.masters.with_current(new).to_json(), replace=True)
    return ring.rotate_master(new)


def delete_tenant(ring: KeyRing, tenant_id: str) -> int:
    """Crypto-shredding: every data key of the tenant is replaced by a tombstone."""
    return ring.delete_tenant_keys(check_identifier(tenant_id, "tenant_id"))


def with_local_master(settings: Settings) -> Settings:
    """The settings' master key; else the local stack's generated one, when it exists."""
    if settings.esb_master_key or settings.esb_master_key_file:
        return settings
    local = local_master_key_file(settings)
    if not local.exists():
        return settings  # keyring_from then says what to set
    return settings.model_copy(update={"esb_master_key_file": local})


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="master and tenant keys of encrypted streams")
    commands = keys.add_subparsers(dest="keys_command", required=True)
    new = commands.add_parser("new-master", help="print (or --out) a fresh master key")
    new.add_argument("--out", type=Path, help="write it to this file (mode 0600) instead")
    rotate = commands.add_parser(
        "rotate-master", help="rewrap every tenant's data keys under a new master key"
    )
    rotate.add_argument("--new-key-file", type=Path, required=True, help="base64 of 32 bytes")
    rotate.add_argument(
        "--out", type=Path, help="the combined key file to write (default: ESB_MASTER_KEY_FILE)"
    )
    delete = commands.add_parser("delete-tenant", help="delete a tenant's data keys (shredding)")
    delete.add_argument("tenant")
    delete.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


def execute(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.keys_command == "new-master":
        key = base64.b64encode(os.urandom(32)).decode()
        if args.out is None:
            print(key, file=out)
        else:
            write_secret(args.out, key, replace=False)
            print(f"wrote a new master key to {args.out}", file=out)
        return 0
    if args.keys_command == "delete-tenant" and not args.yes:
        raise InvalidInput(
            f"deleting tenant {args.tenant!r}'s keys makes its encrypted events unreadable for "
            "good; add --yes to confirm"
        )
    settings = with_local_master(settings)
    ring = keyring_from(settings)
    if args.keys_command == "rotate-master":
        target = args.out or settings.esb_master_key_file
        if target is None:
            raise InvalidInput(
                "the master key comes from ESB_MASTER_KEY: say where to write the"
                " combined key file with --out FILE"
            )
        count = rotate_master(ring, args.new_key_file, target)
        print(
            f"rewrapped {count} data key(s) under master key {ring.masters.current.key_id}; "
            f"{target} holds the old and new keys: point ESB_MASTER_KEY_FILE at it and restart "
            "the API and pipeline jobs",
            file=out,
        )
        return 0
    count = delete_tenant(ring, args.tenant)
    print(f"deleted {count} data key(s) of tenant {args.tenant}", file=out)
    return 0
