"""The REST API v1: serializers, views, permissions and error mapping (thin adapters)."""
