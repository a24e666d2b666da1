"""manage.py create_reviewer EMAIL [--password PW]: a staff user in the reviewers group; prints an API token."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from api.services import api_token_get_or_create
from conversations.services import user_create
from orchestration.permissions import reviewers_group
from project.errors import SwitchboardError


class Command(BaseCommand):
    help = "Create a reviewer (staff, in the reviewers group) and print their API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password", default=None, help="lets the reviewer sign in to Django admin")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                user = user_create(email=options["email"], password=options["password"], is_staff=True)
                user.groups.add(reviewers_group())
                token = api_token_get_or_create(user=user)
        except SwitchboardError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(token)
