"""manage.py create_reviewer EMAIL [--password PW]: a staff user in the reviewers group; prints an API token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from api.services import api_token_get_or_create
from orchestration.permissions import reviewers_group


class Command(BaseCommand):
    help = "Create a reviewer (staff, in the reviewers group) and print their API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password", default=None, help="lets the reviewer sign in to Django admin")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"].strip().lower()
        if "@" not in email:
            raise CommandError(f"{email!r} is not an email address.")
        user_model = get_user_model()
        with transaction.atomic():
            if user_model.objects.filter(username=email).exists():
                raise CommandError(f"A user {email} already exists.")
            user = user_model.objects.create_user(
                username=email, email=email, password=options["password"], is_staff=True
            )
            user.groups.add(reviewers_group())
            token = api_token_get_or_create(user=user)
        self.stdout.write(token)
