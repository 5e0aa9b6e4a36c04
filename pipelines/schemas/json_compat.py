"""JSON Schema compatibility: does a reader schema accept every instance a writer schema
accepts? Conservative (what it cannot prove is reported), and the content model decides
about properties one side does not name:

- open (additionalProperties absent or true): the other side's unnamed properties may hold
  anything, so a reader that adds a typed property cannot read an open writer's data;
- closed (additionalProperties: false): the writer never sends unnamed properties, so a
  reader may add optional properties; a closed reader refuses every property it does not name.

>>> old = {"type": "object", "properties": {"a": {"type": "string"}}}
>>> new = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
>>> print(*reader_accepts(new, old))  # doctest: +ELLIPSIS
#/properties/b: the reader requires {'type': 'integer'} where the writer's open content model ...
>>> closed = lambda s: {**s, "additionalProperties": False}
>>> reader_accepts(closed(new), closed(old))
[]
"""

from __future__ import annotations

from typing import Any

_RANGE_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_RANGE_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_EXACT = ("$ref", "oneOf", "anyOf", "allOf", "not", "if", "then", "else", "pattern", "format")
_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})


def reader_accepts(reader: Any, writer: Any, path: str = "#") -> list[str]:
    """Why `reader` may refuse something `writer` accepts ([] when it accepts all of it)."""
    if reader is True or reader == {} or writer is False:
        return []
    if reader is False:
        return [f"{path}: the reader accepts nothing where the writer accepts values"]
    if writer is True:
        writer = {}
    problems = _types(reader, writer, path) + _values(reader, writer, path)
    problems += _ranges(reader, writer, path) + _exact(reader, writer, path)
    if "properties" in reader or "properties" in writer or _closed(reader) or _closed(writer):
        problems += _objects(reader, writer, path)
    if "items" in reader or "items" in writer:
        problems += reader_accepts(
            reader.get("items", True), writer.get("items", True), f"{path}/items"
        )
    return problems


def _type_set(schema: dict[str, Any]) -> frozenset[str]:
    kind = schema.get("type")
    if kind is None:
        return _ALL_TYPES
    return frozenset([kind] if isinstance(kind, str) else kind)


def _types(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    accepted = _type_set(reader) | ({"integer"} if "number" in _type_set(reader) else set())
    missing = _type_set(writer) - accepted
    if not missing:
        return []
    if "type" not in writer:
        return [f"{path}: the reader requires type {reader['type']!r} where the writer allows any"]
    return [f"{path}: the writer's type {sorted(missing)} is not accepted by the reader"]


def _values(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    allowed = reader.get("enum", [reader["const"]] if "const" in reader else None)
    if allowed is None:
        return []
    written = writer.get("enum", [writer["const"]] if "const" in writer else None)
    if written is None:
        return [f"{path}: the reader allows only {allowed} where the writer has no enum"]
    extra = [v for v in written if v not in allowed]
    return [f"{path}: the writer's values {extra} are not in the reader's enum"] if extra else []


def _ranges(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    problems = []
    for keyword in (*_RANGE_UPPER, *_RANGE_LOWER):
        if keyword not in reader:
            continue
        bound, written = reader[keyword], writer.get(keyword)
        upper = keyword in _RANGE_UPPER
        if written is None or (written > bound if upper else written < bound):
            problems.append(f"{path}: the reader's {keyword} {bound} is narrower than the writer's")
    return problems


def _exact(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    # Combinators and references are compared as written: equal is compatible, the rest unproven.
    return [
        f"{path}: {keyword} differs between reader and writer"
        for keyword in _EXACT
        if keyword in reader and reader.get(keyword) != writer.get(keyword)
    ]


def _closed(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties", True) is False


def _objects(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    problems = []
    r_props, w_props = reader.get("properties", {}), writer.get("properties", {})
    r_extra, w_extra = (
        reader.get("additionalProperties", True),
        writer.get("additionalProperties", True),
    )
    for name in sorted(set(reader.get("required", [])) - set(writer.get("required", []))):
        problems.append(
            f"{path}/properties/{name}: required by the reader, optional for the writer"
        )
    for name in sorted(set(r_props) | set(w_props)):
        where = f"{path}/properties/{name}"
        if name in r_props and name in w_props:
            problems += reader_accepts(r_props[name], w_props[name], where)
        elif name in w_props:  # the writer sends it; the reader sees it as an unnamed property
            if r_extra is False:
                problems.append(
                    f"{where}: the writer sends it; the reader's closed content model refuses it"
                )
            else:
                problems += reader_accepts(r_extra, w_props[name], where)
        elif w_extra is not False:  # the reader names it; an open writer may send anything there
            if w_extra in (True, {}):
                if r_props[name] not in (True, {}):
                    problems.append(
                        f"{where}: the reader requires {r_props[name]} where the writer's open "
                        "content model allows anything"
                    )
            else:
                problems += reader_accepts(r_props[name], w_extra, where)
    if r_extra is not True and w_extra is not False:
        problems += reader_accepts(r_extra, w_extra, f"{path}/additionalProperties")
    return problems
