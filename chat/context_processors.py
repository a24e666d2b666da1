"""The brand on every chat page (`TEMPLATES`' context processors): the shop's name in the title and heading, and the
review banner's sentence before the run's own reason arrives. Values from `project/settings_brand.py`, escaped by
the templates like any text (no inline script: the page's CSP allows none)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from project import brand as brand_texts


def brand(request: HttpRequest) -> dict[str, str]:
    return {
        "brand_shop_name": settings.BRAND_SHOP_NAME,
        "brand_review_reason": brand_texts.fill("{Team} will reply here."),
    }
