"""API v1 views: thin adapters from HTTP to the services and selectors."""

from __future__ import annotations

from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.health import health_report
from api.permissions import IsCustomer, IsReviewer
from api.serializers import (
    ConversationDetailSerializer,
    ConversationSerializer,
    MessagePostSerializer,
    MessageSerializer,
    OrderSerializer,
    ReviewDecisionInputSerializer,
    ReviewItemDetailSerializer,
    ReviewItemSerializer,
    RunSerializer,
    RunSummarySerializer,
)
from conversations.selectors import conversation_get, conversation_list, message_list, order_list
from conversations.services import conversation_create
from orchestration.reviews import UNSET, review_decide, review_get, review_list_open
from orchestration.selectors import run_get
from orchestration.services import conversation_message_post
from project.errors import InvalidInput

IDEMPOTENCY_KEY_MAX = 200


class CustomerView(APIView):
    permission_classes = [IsCustomer]


class ConversationListView(CustomerView):
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        queryset = conversation_list(customer=request.customer)
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(ConversationSerializer(page, many=True).data)

    def post(self, request: Request) -> Response:
        conversation = conversation_create(customer=request.customer)
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailView(CustomerView):
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_get(customer=request.customer, conversation_id=conversation_id)
        return Response(ConversationDetailSerializer(conversation).data)


class MessageListView(CustomerView):
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_get(customer=request.customer, conversation_id=conversation_id)
        return Response(MessageSerializer(message_list(conversation=conversation), many=True).data)

    def post(self, request: Request, conversation_id: str) -> Response:
        body = MessagePostSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX):
            raise InvalidInput(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters.")
        message, run, _created = conversation_message_post(
            customer=request.customer,
            conversation_id=conversation_id,
            content=body.validated_data["content"],
            trace_id=request.trace_id,
            idempotency_key=key,
        )
        data = {"message": MessageSerializer(message).data, "run": RunSummarySerializer(run).data}
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/runs/{run.id}/"})


class RunDetailView(CustomerView):
    def get(self, request: Request, run_id: str) -> Response:
        return Response(RunSerializer(run_get(customer=request.customer, run_id=run_id)).data)


class OrderListView(CustomerView):
    def get(self, request: Request) -> Response:
        return Response(OrderSerializer(order_list(customer=request.customer), many=True).data)


class ReviewListView(APIView):
    permission_classes = [IsReviewer]

    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(review_list_open(), request, view=self)
        return paginator.get_paginated_response(ReviewItemSerializer(page, many=True).data)


class ReviewDetailView(APIView):
    permission_classes = [IsReviewer]

    def get(self, request: Request, item_id: str) -> Response:
        return Response(ReviewItemDetailSerializer(review_get(item_id)).data)


class ReviewDecisionView(APIView):
    permission_classes = [IsReviewer]

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
        return Response(ReviewItemDetailSerializer(item).data)


class HealthView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request: Request) -> Response:
        healthy, report = health_report()
        return Response(report, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)
