"""manage.py seed_demo: the demo customer (with orders), an admin user and the demo help centre (through
`manage.py knowledge import`); safe to run again.

With COMMERCE_BACKEND=http the demo orders are not created: orders live in the shop's API, which never reads
Switchboard's order table; the command says so and prints the demo customer's id, the one the shop is asked for.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from api.services import api_token_get_or_create
from conversations.models import Customer
from conversations.services import customer_create, order_create_demo_customer
from conversations.shop import commerce_orders_local
from knowledge.services import DEMO_DOCS_DIR
from orchestration.permissions import reviewers_group

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-password"


class Command(BaseCommand):
    help = "Create the demo customer and admin user if missing, load the demo documents, and print how to use them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--token-only", action="store_true", help="print only the demo customer's API token")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with transaction.atomic():
            customer = Customer.objects.filter(user__username=DEMO_EMAIL).first()
            if customer is None:
                customer = customer_create(email=DEMO_EMAIL, name="Dana Demo", password=DEMO_PASSWORD)
                if commerce_orders_local():
                    order_create_demo_customer(customer=customer)
            admin = user_model.objects.filter(username=ADMIN_USERNAME).first()
            if admin is None:
                admin = user_model.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
            admin.groups.add(reviewers_group())
            token = api_token_get_or_create(user=customer.user)
        # The demo help centre, through the same command as a shop's own documents.
        call_command(
            "knowledge", "import", str(DEMO_DOCS_DIR), stdout=io.StringIO() if options["token_only"] else self.stdout
        )
        if options["token_only"]:
            self.stdout.write(token)
            return
        self.stdout.write(f"Demo customer: {DEMO_EMAIL} / {DEMO_PASSWORD}")
        if not commerce_orders_local():
            self.stdout.write(
                f"Demo orders: none created. COMMERCE_BACKEND={settings.COMMERCE_BACKEND}: orders live in your shop's "
                f"API ({settings.COMMERCE_API_URL or 'COMMERCE_API_URL is not set'}), not in Switchboard's tables. "
                f"Add the demo customer's orders there, under customer_id {customer.id} (docs/commerce-api.md)."
            )
        self.stdout.write(f"Demo customer API token: {token}")
        self.stdout.write(f"Admin and reviewer: user {ADMIN_USERNAME} / password {ADMIN_PASSWORD} (local use only)")
