"""Every Switchboard error maps to one HTTP status, from the one table in api.errors."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from api.errors import ERROR_STATUSES, PUBLIC_SERVER_ERRORS, error_status, exception_handler
from project.errors import SwitchboardError

PACKAGES = ["project", "conversations", "agents", "orchestration", "api", "chat", "a2a_server", "evaluation"]

#: Every SwitchboardError subclass in the code base and the status the API answers it with.
STATUSES = {
    "project.errors.SwitchboardError": 500,
    "project.errors.InvalidInput": 400,
    "project.errors.NotFound": 404,
    "project.errors.PermissionDenied": 403,
    "project.errors.Conflict": 409,
    "project.errors.NotCancelable": 409,
    "project.errors.TransientError": 503,
    "project.errors.Postponed": 503,
    "project.errors.PermanentError": 500,
    "project.errors.InvalidEnvelope": 500,
    "project.errors.RunHalted": 409,
    "project.errors.BudgetExceeded": 409,
    "project.errors.LoopDetected": 409,
    "project.errors.DeadlineExceeded": 409,
    "agents.llm.errors.LLMRateLimited": 503,
    "agents.llm.errors.LLMTimeout": 503,
    "agents.llm.errors.LLMUnavailable": 503,
    "agents.llm.errors.LLMRequestRejected": 500,
    "agents.llm.errors.LLMMalformedOutput": 503,
    "agents.llm.errors.LLMCircuitOpen": 503,
    "project.errors.PollLater": 503,
    "agents.remote_errors.RemoteUnavailable": 503,
    "agents.remote_errors.RemoteCircuitOpen": 503,
    "agents.remote_errors.RemotePending": 503,
    "agents.remote_errors.RemoteFailed": 500,
    "agents.remote_errors.RemoteHalted": 409,
    "agents.remote_errors.RemoteRefused": 409,
    "orchestration.attempts.MemoLost": 500,
    "conversations.commerce.CommerceUnavailable": 503,
    "conversations.commerce.RefundRefused": 500,
    "conversations.commerce.CommerceCircuitOpen": 503,
    "agents.tools.mcp.MCPCircuitOpen": 503,
    "agents.tools.mcp.MCPRefused": 500,
    "agents.tools.mcp.MCPUnavailable": 503,
    "orchestration.permissions.NotAReviewer": 403,
    "orchestration.permissions.MayNotReplay": 403,
    "orchestration.reviews.SecondReviewerRequired": 403,
}


def error_classes() -> dict[str, type[SwitchboardError]]:
    """SwitchboardError and its subclasses, after importing every module of the product's packages."""
    for package in PACKAGES:
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            if ".migrations." not in module.name:
                importlib.import_module(module.name)
    found, todo = {}, [SwitchboardError]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return {name: cls for name, cls in found.items() if name.split(".")[0] in PACKAGES}


def test_the_table_lists_every_error_class_of_the_code_base() -> None:
    assert set(error_classes()) == set(STATUSES)


@pytest.mark.parametrize(("name", "status"), sorted(STATUSES.items()))
def test_each_error_maps_to_its_status(name: str, status: int) -> None:
    cls = error_classes()[name]
    assert error_status(cls("x")) == status
    response = exception_handler(cls("Something is wrong: the shop said DB_PASSWORD=hunter2."), {"request": None})
    assert response is not None and response.status_code == status
    # A 4xx message is ours, for the caller; a 5xx one may quote a system behind us: a fixed sentence instead.
    public = PUBLIC_SERVER_ERRORS.get(status, "Something is wrong: the shop said DB_PASSWORD=hunter2.")
    assert response.data["error"] == {"code": cls.code, "message": public}


def test_the_table_ends_with_the_base_class_and_has_no_class_shadowed_by_an_earlier_one() -> None:
    classes = [cls for cls, _ in ERROR_STATUSES]
    assert classes[-1] is SwitchboardError
    for index, cls in enumerate(classes):
        assert not any(issubclass(cls, earlier) for earlier in classes[:index]), cls
