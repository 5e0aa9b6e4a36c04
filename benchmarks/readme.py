"""The README results section from a run's JSON: `python -m benchmarks.readme [RESULT.json]`.

Without an argument it uses the latest full run in benchmarks/results/ and (re)writes
benchmarks/results/README-section.md; the section is printed either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from benchmarks.report import full_markdown

RESULTS = Path(__file__).resolve().parent / "results"


def latest_full_run() -> Path | None:
    for path in sorted(RESULTS.glob("*.json"), reverse=True):
        if orjson.loads(path.read_bytes()).get("config", {}).get("name") == "full":
            return path
    return None


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else latest_full_run()
    if path is None:
        print("no full run in benchmarks/results/ yet: run `make bench`", file=sys.stderr)
        return 1
    section = full_markdown(orjson.loads(path.read_bytes()))
    if not argv:
        (RESULTS / "README-section.md").write_text(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
