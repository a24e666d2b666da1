"""A small JSON-schema check for the subset our prompts use.

Supported: type (object, array, string, number, integer, boolean, null), properties,
required, enum, items, anyOf. Enough to refuse a malformed answer with a clear reason.
"""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Where `value` breaks `schema`, as readable sentences; empty if it fits."""
    if "anyOf" in schema:
        if any(not schema_errors(value, option, path) for option in schema["anyOf"]):
            return []
        return [f"{path} matches none of the allowed shapes."]
    expected = schema.get("type")
    if expected is not None:
        kinds = _TYPES[expected]
        wrong_bool = isinstance(value, bool) and expected in ("number", "integer")
        if not isinstance(value, kinds) or wrong_bool:
            return [f"{path} must be {expected}, got {type(value).__name__}."]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path} must be one of {schema['enum']}, got {value!r}."]
    errors: list[str] = []
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name} is required.")
        for name, subschema in schema.get("properties", {}).items():
            if name in value:
                errors += schema_errors(value[name], subschema, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors
