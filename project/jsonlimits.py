"""JSON from outside (a request body, an admin form's text box, a model's answer) parsed within bounds.

Python's json module parses nesting recursively: a text nested some thousands deep (a few KiB) raises
RecursionError, and one just under the interpreter's limit parses, only to fail wherever it is walked next
(validation, storing it, logging it). An integer of more than 4300 digits raises a plain ValueError (not
JSONDecodeError), and `NaN` or `Infinity` parse to floats that PostgreSQL's jsonb cannot store. Every caller that
parses outside JSON uses `json_loads_limited` (or, where a framework parses, `json_depth_exceeds` on the result) and
refuses all of these the same way, with a short message.
"""

from __future__ import annotations

import json
from typing import Any


class JSONRefused(ValueError):
    """Outside JSON that is refused: not JSON, nested too deeply, or holding a number Python will not read."""


def json_depth_exceeds(data: Any, limit: int) -> bool:
    """Whether `data` (parsed JSON) nests more than `limit` arrays and objects deep (a scalar is depth 0,
    `[]` and `{}` depth 1). Walks iteratively: no recursion, whatever the depth."""
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth + 1 > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return False


def _constant_refuse(name: str) -> Any:
    """`parse_constant` for json.loads: NaN, Infinity and -Infinity are not JSON."""
    raise JSONRefused(f"{name} is not a JSON value.")


def json_loads_limited(text: str | bytes, *, max_depth: int) -> Any:
    """`text` parsed as JSON, or JSONRefused (a ValueError) saying why in one short sentence: it is not JSON
    (including NaN and Infinity), it nests more than `max_depth` arrays and objects deep, or a number in it has
    too many digits to read. Never RecursionError, never another exception for any text."""
    refused = JSONRefused(f"it nests deeper than {max_depth} levels.")
    try:
        data = json.loads(text, parse_constant=_constant_refuse)
    except RecursionError:
        raise refused from None
    except JSONRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRefused(str(exc)) from None
    except ValueError:  # int(): more digits than sys.get_int_max_str_digits(); or bytes that are not UTF-8
        raise JSONRefused("a number in it has too many digits, or it is not UTF-8 text.") from None
    if json_depth_exceeds(data, max_depth):
        raise refused
    return data
