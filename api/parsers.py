"""The API's JSON parser: DRF's, with a limit on how deeply a body may nest (REQUEST_JSON_MAX_DEPTH).

Python's json module parses nesting recursively: a body nested some thousands deep (a few KiB) raises
RecursionError, and one just under the interpreter's limit parses, only to fail wherever it is walked
next (validation, storing it, logging it). Every request body the API parses is refused with 400
`parse_error` beyond the limit instead, before any view sees it (the depth check is `project.jsonlimits`'s, which
the admin's decision form and the LLM provider use too). DRF's parser already refuses NaN and Infinity and turns
the ValueError of an over-long integer into a ParseError.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from project.jsonlimits import json_depth_exceeds


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; a body nested deeper than REQUEST_JSON_MAX_DEPTH is a ParseError (400)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.REQUEST_JSON_MAX_DEPTH
        refused = ParseError(f"JSON parse error - the body nests deeper than {limit} levels.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise refused from None
        if json_depth_exceeds(data, limit):
            raise refused
        return data
