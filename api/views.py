"""API v1 views: thin adapters from HTTP to the services and selectors."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView as BaseListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView as BaseAPIView

from api.authentication import customer_from_request
from api.health import health_report
from api.permissions import IsCustomer, IsReviewer
from api.serializers import (
    ConversationDetailSerializer,
    ConversationSerializer,
    HealthSerializer,
    MessagePostedSerializer,
    MessagePostSerializer,
    MessageSerializer,
    OrderSerializer,
    ReviewDecisionInputSerializer,
    ReviewItemDetailSerializer,
    ReviewItemSerializer,
    RunPublicSummarySerializer,
    RunSerializer,
)
from api.throttles import (
    MessagePostThrottle,
    PerCustomerThrottle,
    PerIPCredentialsThrottle,
    PerIPThrottle,
    throttle_needs_caller,
    throttles_refusing,
)
from conversations.models import Conversation, Customer
from conversations.selectors import conversation_get, conversation_list, message_list, order_list
from conversations.services import conversation_create
from orchestration.cancel import run_cancel
from orchestration.models import ReviewItem
from orchestration.reviews import UNSET, review_decide
from orchestration.runs import conversation_message_post
from orchestration.selectors import review_detail_get, review_detail_load, review_list_open, run_detail_get
from project.errors import InvalidInput
from project.middleware import request_trace_id

IDEMPOTENCY_KEY_MAX = 200


def id_parameter(name: str) -> OpenApiParameter:
    """A UUID in the path."""
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH)


class APIView(BaseAPIView):
    """Throttles run first: those that need no caller (per IP) before authentication, so that a flood of
    bad tokens is refused before each costs a database lookup; those per caller (per customer) right after
    it, before permissions, so that floods of anonymous requests are throttled too (DRF authenticates, then
    checks permissions, then throttles: a 401 would end the request before any throttle ran)."""

    # drf-spectacular documents each operation with the first docstring in its view's MRO: views
    # below this one carry comments, not docstrings.

    def perform_authentication(self, request: Request) -> None:
        self.throttles_check(request, caller_needed=False)
        super().perform_authentication(request)

    def check_permissions(self, request: Request) -> None:
        self.throttles_check(request, caller_needed=True)
        super().check_permissions(request)

    def check_throttles(self, request: Request) -> None:
        pass  # done by the two methods above, before authentication and before permissions

    def throttles_check(self, request: Request, *, caller_needed: bool) -> None:
        """DRF's check_throttles over this view's throttles that need (or do not need) the caller: every
        such throttle counts the request; if any refuses it, 429 with the longest wait."""
        throttles = [t for t in self.get_throttles() if throttle_needs_caller(t) == caller_needed]
        waits = [throttle.wait() for throttle in throttles_refusing(throttles, request, self)]
        if waits:
            # None: no throttle knows the wait (DRF accepts it, as its own check_throttles passes; its stubs say float).
            wait = max((wait for wait in waits if wait is not None), default=None)
            self.throttled(request, wait)  # type: ignore[arg-type]


class ListAPIView(APIView, BaseListAPIView):
    pass


class CustomerView(APIView):
    # For customers only (IsCustomer); `self.customer` is the caller's profile.

    permission_classes = [IsCustomer]

    @cached_property
    def customer(self) -> Customer:
        customer = customer_from_request(self.request)
        if customer is None:  # IsCustomer lets no such request reach the handler
            raise exceptions.PermissionDenied(IsCustomer.message)
        return customer


class ConversationListView(CustomerView, ListAPIView):
    serializer_class = ConversationSerializer

    def get_queryset(self) -> QuerySet[Conversation]:
        return conversation_list(customer=self.customer)

    @extend_schema(summary="Your conversations, newest first", tags=["conversations"])
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(
        summary="Start a conversation", request=None, responses={201: ConversationSerializer}, tags=["conversations"]
    )
    def post(self, request: Request) -> Response:
        conversation = conversation_create(customer=self.customer)
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailView(CustomerView):
    @extend_schema(
        summary="One conversation with its messages",
        parameters=[id_parameter("conversation_id")],
        responses=ConversationDetailSerializer,
        tags=["conversations"],
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_get(customer=self.customer, conversation_id=conversation_id)
        return Response(ConversationDetailSerializer(conversation).data)


class MessageListView(CustomerView):
    throttle_classes = [PerIPThrottle, PerCustomerThrottle, MessagePostThrottle]

    @extend_schema(
        summary="Messages of a conversation, oldest first",
        parameters=[id_parameter("conversation_id")],
        responses=MessageSerializer(many=True),
        tags=["conversations"],
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_get(customer=self.customer, conversation_id=conversation_id)
        return Response(MessageSerializer(message_list(conversation=conversation), many=True).data)

    @extend_schema(
        summary="Post a message: stores it and starts a run (202 at once; agents work in the background)",
        parameters=[
            id_parameter("conversation_id"),
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description=(
                    f"1 to {IDEMPOTENCY_KEY_MAX} characters. The same key again returns the same message and run; "
                    "the same key with different content is 409. Keys are per customer."
                ),
            ),
        ],
        request=MessagePostSerializer,
        responses={202: MessagePostedSerializer},
        tags=["conversations"],
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        body = MessagePostSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX):
            raise InvalidInput(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters.")
        message, run, _created = conversation_message_post(
            customer=self.customer,
            conversation_id=conversation_id,
            content=body.validated_data["content"],
            trace_id=request_trace_id(request),
            idempotency_key=key,
        )
        data = {"message": MessageSerializer(message).data, "run": RunPublicSummarySerializer(run).data}
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/runs/{run.id}/"})


class RunDetailView(CustomerView):
    @extend_schema(
        summary="A run as its customer sees it (poll this without SSE)",
        description=(
            "Status, a public reason (a code and a fixed sentence; null while the run is on its way or completed) "
            "and each agent step's name, status and timings. Internal reasons, errors, models, prompts, tokens, "
            "budgets and costs are for staff: see the review item (`GET /api/v1/reviews/{id}/`) or the admin."
        ),
        parameters=[id_parameter("run_id")],
        responses=RunSerializer,
        tags=["runs"],
    )
    def get(self, request: Request, run_id: str) -> Response:
        return Response(RunSerializer(run_detail_get(customer=self.customer, run_id=run_id)).data)


class RunCancelView(CustomerView):
    @extend_schema(
        operation_id="runs_cancel",
        summary="Cancel a run: stop it while it is queued, running or waiting for a person",
        description=(
            "The run becomes `cancelled` (reason code `cancelled`): its agents stop, a person's review of it is "
            "closed, and nothing it prepared is sent or executed — no reply, no refund. The conversation gets one "
            "short notice saying so. Answers the run as `GET /api/v1/runs/{run_id}/` does. Cancelling a cancelled "
            "run answers it unchanged; a run that completed, failed or timed out is 409 (`not_cancelable`)."
        ),
        parameters=[id_parameter("run_id")],
        request=None,
        responses=RunSerializer,
        tags=["runs"],
    )
    def post(self, request: Request, run_id: str) -> Response:
        run_cancel(customer=self.customer, run_id=run_id)
        return Response(RunSerializer(run_detail_get(customer=self.customer, run_id=run_id)).data)


class OrderListView(CustomerView):
    @extend_schema(summary="Your orders", responses=OrderSerializer(many=True), tags=["orders"])
    def get(self, request: Request) -> Response:
        return Response(OrderSerializer(order_list(customer_id=str(self.customer.id)), many=True).data)


class ReviewListView(ListAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewItemSerializer

    def get_queryset(self) -> QuerySet[ReviewItem]:
        return review_list_open()

    @extend_schema(summary="Open review items, overdue first, then oldest first (reviewers only)", tags=["reviews"])
    def get(self, request: Request) -> Response:
        return super().get(request)


class ReviewDetailView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        summary="One review item with the transcript, steps and decisions (reviewers only)",
        description=(
            "The staff view of the run: its internal reason and detail, usage and budget, and each step's error, "
            "model, prompt version, tokens and cost."
        ),
        parameters=[id_parameter("item_id")],
        responses=ReviewItemDetailSerializer,
        tags=["reviews"],
    )
    def get(self, request: Request, item_id: str) -> Response:
        return Response(ReviewItemDetailSerializer(review_detail_get(item_id)).data)


class ReviewDecisionView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        summary="Decide a review item: approve, edit or reject (reviewers only; 409 if already decided)",
        description=(
            "A decision that could not be executed (refunds together above what is left on the order, another "
            "currency, another customer's order, an amount not understood) is refused with 400 and the reason; "
            "nothing is recorded. An edited action without a currency is in the order's currency. Refunds that, with "
            "everything reviewers approved on the same orders before, come to more than "
            "REFUND_SECOND_APPROVAL_ABOVE need two reviewers: the first approval answers 200 with "
            "`pending_decision` set and executes nothing; another reviewer's approve executes exactly it (the "
            "same reviewer: 403), an edit starts a new first approval, a reject ends it."
        ),
        parameters=[id_parameter("item_id")],
        request=ReviewDecisionInputSerializer,
        responses=ReviewItemDetailSerializer,
        tags=["reviews"],
    )
    def post(self, request: Request, item_id: str) -> Response:
        body = ReviewDecisionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = review_decide(
            item_id=item_id,
            reviewer=request.user,
            decision=body.validated_data["decision"],
            reply=body.validated_data.get("reply", UNSET),
            action=body.validated_data.get("action", UNSET),
        )
        return Response(ReviewItemDetailSerializer(review_detail_load(item)).data)


class HealthView(APIView):
    """No authentication needed; staff (token or session) also see the checks' details. A request that carries
    credentials counts in the per-IP throttle before they are looked up (429 past THROTTLE_IP_RATE); one without
    (a probe) is never throttled."""

    permission_classes = [AllowAny]
    throttle_classes = [PerIPCredentialsThrottle]

    @extend_schema(
        summary="Liveness and readiness: database, broker, workers",
        responses={
            200: HealthSerializer,
            503: OpenApiResponse(HealthSerializer, description="a check failed"),
        },
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        healthy, report = health_report(details=request.user.is_staff)
        return Response(report, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)
