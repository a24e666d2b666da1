"""Database queries per request: the detail endpoints load what they show in a fixed number of queries,
however many steps, messages and decisions there are; the event stream authenticates as the views do."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from api.services import api_token_get_or_create
from tests.review_data import run_in_review, staff_reviewer

pytestmark = [pytest.mark.django_db]


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_run_is_three_queries_whatever_its_steps(django_assert_num_queries) -> None:
    for steps in (1, 12):
        run, _, token = run_in_review(steps=steps, messages=1)
        client = client_for(token)
        # The token with its user and customer, the run, its steps.
        with django_assert_num_queries(3):
            response = client.get(f"/api/v1/runs/{run.id}/")
        assert response.status_code == 200
        assert [step["agent"] for step in response.json()["steps"]] == [f"agent{hop}" for hop in range(steps)]


def test_a_review_item_is_seven_queries_whatever_its_steps_messages_and_decisions(django_assert_num_queries) -> None:
    reviewer_token = api_token_get_or_create(user=staff_reviewer())
    for size in (1, 10):
        _, item, _ = run_in_review(steps=size, messages=size, decisions=size)
        client = client_for(reviewer_token)
        # The token, the reviewer's permissions (2), the item with its run, conversation and decider, then
        # the steps, the decisions with their reviewers and the transcript.
        with django_assert_num_queries(7):
            response = client.get(f"/api/v1/reviews/{item.id}/")
        assert response.status_code == 200
        body = response.json()
        assert len(body["steps"]) == len(body["transcript"]) == len(body["decisions"]) == size
        assert body["transcript"][0]["content"] == "Refund SB-1"
        assert {decision["reviewer"] for decision in body["decisions"]} != {None}


def test_deciding_answers_the_item_in_the_same_queries_whatever_its_steps_and_messages(
    django_assert_max_num_queries,
) -> None:
    reviewer_token = api_token_get_or_create(user=staff_reviewer())
    counts = []
    for size in (1, 10):
        _, item, _ = run_in_review(steps=size, messages=size)
        client = client_for(reviewer_token)
        with django_assert_max_num_queries(20) as captured:
            response = client.post(f"/api/v1/reviews/{item.id}/decision/", {"decision": "reject"}, format="json")
        assert response.status_code == 200, response.content
        assert len(response.json()["steps"]) == len(response.json()["transcript"]) == size
        counts.append(len(captured))
    assert counts[0] == counts[1]


def test_the_event_stream_authenticates_with_the_token_and_its_customer_in_one_query(
    django_assert_num_queries,
) -> None:
    run, _, token = run_in_review(steps=1, messages=1)
    # The token with its user and customer, then the run.
    with django_assert_num_queries(2):
        response = Client().get(f"/api/v1/runs/{run.id}/events/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"


def test_the_event_stream_answers_sessions_as_the_views_do() -> None:
    run, _, _ = run_in_review(steps=1, messages=1)
    path = f"/api/v1/runs/{run.id}/events/"
    client = Client()
    assert client.get(path).status_code == 401
    assert client.get(path, HTTP_AUTHORIZATION="Token not-a-token").json()["error"] == {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
    }
    client.force_login(staff_reviewer())
    assert client.get(path).json()["error"] == {
        "code": "permission_denied",
        "message": "This endpoint is for customers.",
    }
    other, _, _ = run_in_review(steps=1, messages=1)
    client.force_login(other.conversation.customer.user)
    assert client.get(path).json()["error"] == {"code": "not_found", "message": "Run not found."}
    assert client.post(path).status_code == 405
    client.force_login(run.conversation.customer.user)
    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
