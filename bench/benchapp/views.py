"""POST /bench/bare/: validate a body and write one row — the floor for the API benchmark."""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.benchapp.models import BenchRow


class BareSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=4000)


class BareView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    def post(self, request: Request) -> Response:
        body = BareSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row = BenchRow.objects.create(content=body.validated_data["content"])
        return Response({"id": row.id}, status=status.HTTP_201_CREATED)
