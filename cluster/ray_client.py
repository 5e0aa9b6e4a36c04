"""Joining the Ray cluster as a driver: the one place that calls ray.init for the bus's processes
(the API deployer, the SDK's dispatcher launcher, a pipeline job), always in the bus's namespace
and with the cluster's auth mode."""

from __future__ import annotations

import os
import socket
from typing import Any

from cluster import naming
from cluster.errors import StackError
from cluster.settings import Settings


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return True  # "auto" or a ray:// URL: let ray.init decide
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def auth_env(settings: Settings) -> dict[str, str]:
    """What a Ray process (node, driver, Jobs or state SDK client) needs to be let in:
    RAY_AUTH_MODE, and in token mode the token's file, which Ray reads itself (RAY_AUTH_TOKEN,
    when set, takes precedence over it)."""
    env: dict[str, str] = {"RAY_AUTH_MODE": settings.ray_auth_mode}
    if settings.ray_auth_mode == "token" and settings.esb_ray_token_file is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(settings.esb_ray_token_file)
    return env


def _reload_auth_config() -> None:
    """Ray reads RAY_AUTH_MODE and the token once per process and caches both: a process that
    asked before (a Jobs SDK call, an earlier cluster) would keep the old answer. The same
    refresh Ray's own ray.init does when it turns token mode on."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def connect(settings: Settings, *, log_to_driver: bool = False) -> Any:
    """`ray`, joined to settings.ray_address (or the cluster this process runs in) once."""
    import ray  # the SDK and unit tests import the services without Ray

    if ray.is_initialized():
        return ray
    if settings.ray_address and not _answers(settings.ray_address):
        # ray.init would wait forever for a cluster that is gone.
        raise StackError(f"no Ray cluster answers at {settings.ray_address}; start it (esb up)")
    os.environ.update(auth_env(settings))  # must match the cluster's
    _reload_auth_config()
    ray.init(
        address=settings.ray_address or "auto",
        namespace=naming.RAY_NAMESPACE,
        log_to_driver=log_to_driver,
        configure_logging=False,
    )
    return ray
