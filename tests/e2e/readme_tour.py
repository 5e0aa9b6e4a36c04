"""Runs the README's code blocks in order, in one shell, the way a reader pastes them, and checks
each printed answer against the example output the README shows under its command.

Blocks: ```bash runs as is; ```python runs in the venv (`.venv/bin/python - <<'PY'`); ```yaml
whose first line is `# <file>.yaml` is written to that file. An HTML comment just before a block
steers the runner (a reader never sees it): `<!-- tour: skip -->` (not run: it starts or stops
the stack), `<!-- tour: wait -->` (run again until its outputs match: eventually consistent; such a
block must be safe to repeat).

Example outputs are the `# ...` comment lines right after a command. JSON ones are shapes: every
key shown must be there with the value shown, `…` stands for any value (`"…"`, `: …`) or for
more keys or items (`, …`); others are text where `…` matches anything.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANY = "__tour_any__"
_BLOCK = re.compile(
    r"(?:<!-- tour: (?P<mode>\w+) -->\n)?```(?P<lang>bash|python|yaml)\n(?P<body>.*?)^```",
    re.S | re.M,
)


@dataclass
class Block:
    lang: str
    body: str
    mode: str | None
    line: int  # in README.md, for messages
    expected: list[str] = field(default_factory=list)


def blocks(readme: str) -> list[Block]:
    found = []
    for match in _BLOCK.finditer(readme):
        block = Block(
            match["lang"],
            match["body"],
            match["mode"],
            readme.count("\n", 0, match.start("lang")) + 1,
        )
        if block.lang != "yaml":
            block.expected = expected_outputs(block.body)
        found.append(block)
    return found


def expected_outputs(body: str) -> list[str]:
    """The example outputs: the `# ` comment lines right after a command line, one output each;
    a more-indented `#  ` line continues the output above it."""
    outputs: list[str] = []
    state = "other"  # after a "command", in its "output", or "other"
    for line in body.splitlines():
        stripped = line.strip()
        if state == "output" and stripped.startswith("#  "):
            outputs[-1] += "\n" + stripped[2:]
        elif state in ("command", "output") and stripped.startswith("# "):
            outputs.append(stripped[2:])
            state = "output"
        else:
            state = "command" if stripped and not stripped.startswith("#") else "other"
    return outputs


def _shape(text: str) -> Any:
    text = text.replace('"…"', json.dumps(ANY))
    text = re.sub(r":\s*…", ": " + json.dumps(ANY), text)
    text = re.sub(r",\s*…\s*(?=[}\]])", "", text)
    text = re.sub(r"[\[{]\s*…\s*,", lambda m: m[0][0], text)
    return json.loads(text)


def matches(expected: str, actual: str) -> bool:
    try:
        shape = _shape(expected)
    except ValueError:
        pattern = ".*".join(re.escape(part) for part in expected.split("…"))
        return re.fullmatch(pattern, actual.strip()) is not None
    try:
        return _fits(shape, json.loads(actual))
    except ValueError:
        return False


def _fits(shape: Any, value: Any) -> bool:
    if shape == ANY:
        return True
    if isinstance(shape, dict):
        return isinstance(value, dict) and all(
            k in value and _fits(v, value[k]) for k, v in shape.items()
        )
    if isinstance(shape, list):
        return isinstance(value, list) and all(
            i < len(value) and _fits(s, value[i]) for i, s in enumerate(shape)
        )
    if isinstance(shape, str) and "…" in shape:
        return isinstance(value, str) and matches(shape, value)
    return bool(shape == value)


class Shell:
    """One bash, its variables kept across blocks; curl ends each answer with a newline."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._count = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.run('curl() { command curl "$@"; echo; }\ntrap \'echo "__failed: $BASH_COMMAND"\' ERR')

    def _read(self) -> None:
        assert self._bash.stdout is not None
        for line in self._bash.stdout:
            self._lines.put(line.rstrip("\n"))

    def run(self, script: str, timeout_s: float = 300) -> list[str]:
        """The lines `script` printed (stdout and stderr)."""
        assert self._bash.stdin is not None
        self._count += 1
        marker = f"__tour_done_{self._count}__"
        self._bash.stdin.write(f"{script}\necho {marker}\n")
        self._bash.stdin.flush()
        out, deadline = [], time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out after {timeout_s:.0f}s; printed: {out}") from None
            if line == marker:
                return out
            out.append(line)

    def close(self) -> None:
        if self._bash.stdin is not None:
            self._bash.stdin.close()
        self._bash.wait(30)


def run_block(shell: Shell, block: Block, cwd: Path) -> list[str]:
    """Run one block; the lines it printed. Raises AssertionError on a failed command or an
    output that does not match the README's."""
    if block.lang == "yaml":  # a file only when it says which: `# <name>.yaml`
        named = re.fullmatch(r"# (\S+\.yaml)", block.body.splitlines()[0].strip())
        if named:
            (cwd / named[1]).write_text(block.body)
        return []
    script = block.body if block.lang == "bash" else f".venv/bin/python - <<'PY'\n{block.body}PY"
    deadline = time.monotonic() + (120 if block.mode == "wait" else 0)
    while True:
        printed = shell.run(script)
        problem = _problem(block, printed)
        if problem is None:
            return printed
        if time.monotonic() > deadline:
            shown = "\n".join(printed)
            raise AssertionError(f"README line {block.line}: {problem}\nprinted:\n{shown}")
        time.sleep(1.0)


def _problem(block: Block, printed: list[str]) -> str | None:
    failed = [line for line in printed if line.startswith("__failed: ")]
    if failed or any(line.startswith("Traceback") for line in printed):
        return f"a command failed: {failed or 'Python traceback'}"
    rest = iter(printed)
    for expected in block.expected:
        if not any(matches(expected, line) for line in rest):
            return f"no output matches {expected!r}"
    return None


def tour_env(base: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **base, "PYTHONUNBUFFERED": "1"}
