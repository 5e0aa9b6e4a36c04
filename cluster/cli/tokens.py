"""`esb tokens ...`: mint local bearer tokens and publish signing keys as a JWKS.

The token alone goes to stdout (`TOKEN=$(esb tokens create ...)`); notes go to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO, cast

from cluster.errors import InvalidInput
from cluster.security.config import AuthConfig, auth_config_from
from cluster.security.principal import ANY, ROLES, Role
from cluster.security.tokens import mint_token, public_jwk
from cluster.settings import Settings, get_settings
from cluster.stack.secrets import with_local_secrets

__all__ = ["execute", "parse_duration", "register", "tokens_command"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds from `3600`, `90s`, `15m`, `12h` or `30d`.

    >>> parse_duration("15m"), parse_duration("3600")
    (900, 3600)
    """
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive duration like 3600, 15m, 12h, 30d")
    return int(match[1]) * _UNITS[match[2] or "s"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `tokens create` and `tokens jwk` to the `esb` sub-parsers; returns `tokens`."""
    tokens = cast(
        argparse.ArgumentParser,
        subparsers.add_parser("tokens", help="mint bearer tokens, publish signing keys"),
    )
    commands = tokens.add_subparsers(dest="tokens_command", required=True)
    create = commands.add_parser(
        "create",
        help="mint a token (HS*: JWT_SECRET_KEY; RS*/ES*: --private-key)",
        description="Mint a bearer token for one tenant and role; prints only the token.",
    )
    create.add_argument("--tenant", required=True, help="the tenant the token acts for")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--subject", help="who the token is for (default: <role>@<tenant>)")
    create.add_argument(
        "--ttl", type=parse_duration, default=3600, help="lifetime: 3600, 15m, 12h, 30d"
    )
    create.add_argument(
        "--stream",
        action="append",
        dest="streams",
        metavar="ID_OR_NAME",
        help="grant one stream (repeat); default: all of the tenant's",
    )
    create.add_argument(
        "--subscription",
        action="append",
        dest="subscriptions",
        metavar="ID_OR_NAME",
        help="grant one subscription (repeat); default: all of the tenant's",
    )
    create.add_argument("--private-key", type=Path, help="PEM private key for RS*/ES* tokens")
    create.add_argument("--kid", help="key id for the header (default: the key's thumbprint)")
    jwk = commands.add_parser(
        "jwk", help="print the JWKS (public keys) for PEM keys, to serve as JWT_JWKS"
    )
    jwk.add_argument("keys", type=Path, nargs="+", help="PEM private or public key files")
    jwk.add_argument("--algorithm", help="RS256, ES256, ... (default: JWT_ALGORITHM)")
    return tokens


def _config(source: Any) -> AuthConfig:
    if isinstance(source, AuthConfig):
        return source
    if source is None:
        source = get_settings()
    return auth_config_from(source)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None


def execute(args: argparse.Namespace, settings: Settings) -> int:
    """From `esb`: signed with the secret the local stack's API checks."""
    return tokens_command(args, with_local_secrets(settings))


def tokens_command(
    args: argparse.Namespace,
    settings: Any = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `esb tokens ...`; `settings` is a Settings or an AuthConfig (default: from env).
    Errors are EsbError (InvalidInput) for the CLI's usual `esb: error:` line."""
    out, err = out or sys.stdout, err or sys.stderr
    if args.tokens_command == "jwk":
        algorithm = args.algorithm or _config(settings).jwt_algorithm
        if algorithm.startswith("HS"):
            raise InvalidInput("HS* secrets are never published: JWKS is for RS*/ES* public keys")
        keys = [public_jwk(_read(path), algorithm) for path in args.keys]
        print(json.dumps({"keys": keys}, indent=2), file=out)
        return 0
    config = _config(settings)
    role = cast(Role, args.role)
    subject = args.subject or f"{role}@{args.tenant}"
    token = mint_token(
        config,
        args.tenant,
        role,
        subject,
        ttl_s=args.ttl,
        streams=args.streams or (ANY,),
        subscriptions=args.subscriptions or (ANY,),
        private_key_pem=_read(args.private_key) if args.private_key else None,
        kid=args.kid,
    )
    print(token, file=out)
    print(
        f"[esb] {config.jwt_algorithm} token for {subject} ({role} of tenant {args.tenant}), "
        f"valid {args.ttl} s; send it as `Authorization: Bearer <token>`",
        file=err,
    )
    return 0
