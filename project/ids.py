"""Identifiers from the outside world (URLs, messages): parsed once, the same way everywhere."""

from __future__ import annotations

import uuid


def uuid_or_none(value: object) -> uuid.UUID | None:
    """The UUID `value` spells, or None when it spells none (a lookup then finds nothing: 404)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
