"""The shop agents talk to, as COMMERCE_BACKEND says (project/settings_commerce.py)."""

from __future__ import annotations

from django.conf import settings

from conversations.commerce import Commerce, DatabaseCommerce
from conversations.commerce_http import HttpCommerce
from conversations.commerce_taped import TapedCommerce
from project import recording
from project.errors import PermanentError


def commerce_backend() -> Commerce:
    """'database' (the default: the built-in demo tables) or 'http' (the shop's API at COMMERCE_API_URL); on the
    record while a step records its calls (`commerce_taped`)."""
    shop = _backend()
    return TapedCommerce(shop) if recording.current() is not None else shop


def _backend() -> Commerce:
    backend = settings.COMMERCE_BACKEND
    if backend == "database":
        return DatabaseCommerce()
    if backend == "http":
        return HttpCommerce.from_settings()
    raise PermanentError(f"COMMERCE_BACKEND must be 'database' or 'http', not {backend!r}.")


def commerce_orders_local() -> bool:
    """Whether orders live in Switchboard's own tables (the 'database' backend): only then does the demo seeding
    create orders, since the 'http' backend never reads them."""
    return settings.COMMERCE_BACKEND == "database"
