"""The API's pagination: DRF's limit/offset, with a maximum page size (API_PAGE_MAX_SIZE).

`?limit=` above the maximum gives a page of the maximum (so `limit=10^19` neither overflows the
database's integers nor returns every row); a limit that is not a positive whole number gives the
default page (PAGE_SIZE); an offset that is not a whole number counts from 0, and one past the end
gives an empty page. `next` and `previous` links always carry the limit actually used.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    @property
    def max_limit(self) -> int:  # type: ignore[override]  # read when used, so that tests may change the setting
        return settings.API_PAGE_MAX_SIZE

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = (
                    f"Number of results to return per page (default {self.default_limit}, at most "
                    f"{self.max_limit}: a larger limit gives a page of {self.max_limit})."
                )
                parameter["schema"]["minimum"] = 1
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"]["minimum"] = 0
        return parameters
