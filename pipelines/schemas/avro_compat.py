"""Avro compatibility: can data written with one schema be read with another, by the Avro
specification's schema resolution rules? Records match by name (or a reader alias); a reader
field missing from the writer needs a default; writer fields the reader lacks are skipped;
int promotes to long, float and double, long to float and double, float to double, string and
bytes to each other; a writer's enum symbol must be in the reader's enum unless the reader has a
default symbol; a writer union needs every branch readable, a reader union one matching branch.

>>> v1 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}
>>> v2 = {**v1, "fields": [*v1["fields"], {"name": "qty", "type": "int"}]}
>>> reader_accepts(v2, v1)
['Order.qty: the reader has no default for a field the writer lacks']
>>> v3 = {**v1, "fields": [*v1["fields"], {"name": "qty", "type": "int", "default": 1}]}
>>> reader_accepts(v3, v1), reader_accepts(v1, v3)
([], [])
"""

from __future__ import annotations

from typing import Any

import fastavro

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class _Side:
    """One parsed schema and its named types, so references resolve to definitions."""

    def __init__(self, doc: Any) -> None:
        self.named: dict[str, Any] = {}
        self.root = fastavro.parse_schema(doc, named_schemas=self.named, _write_hint=False)

    def resolve(self, node: Any) -> Any:
        while isinstance(node, str) and node in self.named:
            node = self.named[node]
        if isinstance(node, dict) and node.get("type") in _PRIMITIVES and "logicalType" not in node:
            return node["type"]
        return node


def reader_accepts(reader: Any, writer: Any) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` ([] when it can)."""
    r, w = _Side(reader), _Side(writer)
    return _check(r, r.root, w, w.root, _name(r.resolve(r.root)) or "", set())


def _name(node: Any) -> str | None:
    return node.get("name") if isinstance(node, dict) else None


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    return node if isinstance(node, str) else str(node.get("type"))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _check(
    r: _Side, reader: Any, w: _Side, writer: Any, path: str, seen: set[tuple[str, str]]
) -> list[str]:
    reader, writer = r.resolve(reader), w.resolve(writer)
    if isinstance(writer, list):  # every branch the writer may have used must be readable
        return [p for branch in writer for p in _check(r, reader, w, branch, path, seen)]
    if isinstance(reader, list):
        for branch in reader:
            if not _check(r, branch, w, writer, path, seen):
                return []
        return [f"{path}: no branch of the reader's union reads the writer's {_kind(writer)}"]
    rk, wk = _kind(reader), _kind(writer)
    if wk in _PRIMITIVES or rk in _PRIMITIVES:
        if rk in _PROMOTIONS.get(wk, {wk}) and rk in _PRIMITIVES and wk in _PRIMITIVES:
            return []
        return [f"{path}: the writer's {wk} cannot be read as {rk}"]
    if rk != wk:
        return [f"{path}: the writer's {wk} cannot be read as {rk}"]
    if rk in ("record", "enum", "fixed"):
        aliases = {_short(a) for a in reader.get("aliases", [])}
        if (
            _short(reader["name"]) != _short(writer["name"])
            and _short(writer["name"]) not in aliases
        ):
            return [
                f"{path}: the writer's {wk} {writer['name']} is not the reader's {reader['name']}"
            ]
    if rk == "record":
        pair = (reader["name"], writer["name"])
        if pair in seen:  # a recursive type: this pair is being checked further up
            return []
        return _records(r, reader, w, writer, path, seen | {pair})
    if rk == "enum":
        extra = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if extra and "default" not in reader:
            return [f"{path}: the writer's symbols {extra} are not in the reader's enum"]
        return []
    if rk == "fixed":
        same = reader["size"] == writer["size"]
        return (
            []
            if same
            else [f"{path}: fixed size {writer['size']} cannot be read as {reader['size']}"]
        )
    if rk == "array":
        return _check(r, reader["items"], w, writer["items"], f"{path}[]", seen)
    if rk == "map":
        return _check(r, reader["values"], w, writer["values"], f"{path}{{}}", seen)
    return [f"{path}: unsupported Avro type {rk}"]


def _records(
    r: _Side,
    reader: dict[str, Any],
    w: _Side,
    writer: dict[str, Any],
    path: str,
    seen: set[tuple[str, str]],
) -> list[str]:
    written = {f["name"]: f for f in writer["fields"]}
    problems = []
    for field in reader["fields"]:
        names = [field["name"], *field.get("aliases", [])]
        match = next((written[n] for n in names if n in written), None)
        where = f"{path}.{field['name']}"
        if match is None:
            if "default" not in field:
                problems.append(f"{where}: the reader has no default for a field the writer lacks")
            continue
        problems += _check(r, field["type"], w, match["type"], where, seen)
    return problems
