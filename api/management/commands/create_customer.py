"""manage.py create_customer EMAIL [--name NAME] [--password PW] [--demo-orders]: prints the API token."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from api.services import api_token_get_or_create
from conversations.services import customer_create, order_create_demo
from project.errors import SwitchboardError


class Command(BaseCommand):
    help = "Create a customer (a user with a customer profile) and print their API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", default="")
        parser.add_argument("--password", default=None, help="lets the customer sign in to the chat page")
        parser.add_argument("--demo-orders", action="store_true", help="give the customer a few demo orders")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                customer = customer_create(email=options["email"], name=options["name"], password=options["password"])
                if options["demo_orders"]:
                    order_create_demo(customer=customer)
                token = api_token_get_or_create(user=customer.user)
        except SwitchboardError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(token)
