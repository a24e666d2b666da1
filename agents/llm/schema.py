"""A small JSON-schema check for the subset our prompts use.

Supported: type (one name or a list: object, array, string, number, integer, boolean, null), properties,
required, additionalProperties (false only), enum, pattern (searched, as JSON Schema does: anchor it), minLength,
maxLength, minimum, maximum, items, minItems, maxItems, uniqueItems, anyOf. Enough to refuse a malformed answer
with a clear reason, which the model is shown in the repair round. A keyword outside this subset is ignored, so a
schema may carry descriptions.
"""

from __future__ import annotations

import json
import re
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
#: How much of a value a sentence quotes (a model's answer may be long, or repeat a customer's words).
QUOTE_CHARS = 60


def quoted(value: Any) -> str:
    """A value as a sentence quotes it: its repr, cut to QUOTE_CHARS characters."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def type_fits(value: Any, expected: str | list[str]) -> bool:
    """Whether `value` is of the JSON type (or one of the types) `expected`; a boolean is no number."""
    names = [expected] if isinstance(expected, str) else expected
    for name in names:
        if isinstance(value, bool) and name in ("number", "integer"):
            continue
        if isinstance(value, _TYPES[name]):
            return True
    return False


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Where `value` breaks `schema`, as readable sentences; empty if it fits."""
    if "anyOf" in schema:
        return _any_of_errors(value, schema["anyOf"], path)
    expected = schema.get("type")
    if expected is not None and not type_fits(value, expected):
        shown = expected if isinstance(expected, str) else " or ".join(expected)
        return [f"{path} must be {shown}, got {type(value).__name__}."]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path} must be one of {schema['enum']}, got {quoted(value)}."]
    if isinstance(value, str):
        return _string_errors(value, schema, path)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_errors(value, schema, path)
    if isinstance(value, dict):
        return _object_errors(value, schema, path)
    if isinstance(value, list):
        return _array_errors(value, schema, path)
    return []


def _any_of_errors(value: Any, options: list[dict[str, Any]], path: str) -> list[str]:
    """Nothing if one option fits; else the errors of the one option of the value's type (the most telling),
    or a sentence saying that no shape fits."""
    results = [schema_errors(value, option, path) for option in options]
    if any(not errors for errors in results):
        return []
    pairs = zip(options, results, strict=True)
    typed = [errors for option, errors in pairs if type_fits(value, option.get("type", []))]
    if len(typed) == 1:
        return typed[0]
    return [f"{path} matches none of the allowed shapes."]


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[str]:
    """minLength, maxLength, pattern."""
    if "minLength" in schema and len(value) < schema["minLength"]:
        return [f"{path} must have at least {schema['minLength']} characters."]
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return [f"{path} must have at most {schema['maxLength']} characters."]
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        return [f"{path} must match {schema['pattern']}, got {quoted(value)}."]
    return []


def _number_errors(value: float, schema: dict[str, Any], path: str) -> list[str]:
    """minimum, maximum."""
    if "minimum" in schema and value < schema["minimum"]:
        return [f"{path} must be at least {schema['minimum']}, got {value}."]
    if "maximum" in schema and value > schema["maximum"]:
        return [f"{path} must be at most {schema['maximum']}, got {value}."]
    return []


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    """required, additionalProperties (false), properties."""
    properties: dict[str, Any] = schema.get("properties", {})
    errors = [f"{path}.{name} is required." for name in schema.get("required", []) if name not in value]
    if schema.get("additionalProperties") is False:
        errors += [f"{path}.{name} is not allowed." for name in value if name not in properties]
    for name, subschema in properties.items():
        if name in value:
            errors += schema_errors(value[name], subschema, f"{path}.{name}")
    return errors


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    """minItems, maxItems, uniqueItems, items."""
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path} must have at least {schema['minItems']} items, got {len(value)}.")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path} must have at most {schema['maxItems']} items, got {len(value)}.")
    if schema.get("uniqueItems"):
        seen = [json.dumps(item, sort_keys=True) for item in value]
        if len(set(seen)) != len(seen):
            errors.append(f"{path} must not repeat an item.")
    if "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors
