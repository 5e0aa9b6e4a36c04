"""The `esb` command line. Each command lives in its own module of cluster.cli, with
`register(subparsers)` and `execute(args, settings)`; only the module of the command given is
imported, so that `esb tokens create` starts in a fraction of a second instead of loading Ray,
Serve and every service (`esb --help` loads them all, for the full list).

>>> sorted(set(COMMANDS.values()))
['events', 'keys', 'pipelines', 'stack', 'streams', 'tokens', 'webhooks']
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from cluster.errors import EsbError
from cluster.settings import get_settings

COMMANDS = {
    "up": "stack",
    "down": "stack",
    "status": "stack",
    "run": "stack",
    "streams": "streams",
    "pipelines": "pipelines",
    "keys": "keys",
    "tokens": "tokens",
    "events": "events",
    "webhooks": "webhooks",
}


def _modules(argv: list[str]) -> dict[str, ModuleType]:
    """The command modules to load: the named command's, or all of them (help, typos)."""
    named = next((a for a in argv if not a.startswith("-")), None)
    wanted = [COMMANDS[named]] if named in COMMANDS else sorted(set(COMMANDS.values()))
    return {name: importlib.import_module(f"cluster.cli.{name}") for name in wanted}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="esb", description="Event Streaming Bus")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = _modules(argv)
    for module in modules.values():
        module.register(sub)
    args = parser.parse_args(argv)
    logging.getLogger("ray").setLevel(logging.ERROR)  # job upload chatter is not for the user
    try:
        return int(modules[COMMANDS[args.command]].execute(args, get_settings()))
    except EsbError as exc:
        print(f"esb: error: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
