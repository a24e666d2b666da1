"""manage.py shop check [--ask QUESTION] [--customer ID]: what Switchboard will answer for, read from the configured
brand, documents, order system and MCP servers (api/shop_check.py); exits 1 when a part would fail a customer."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.shop_check import Level, shop_check


class Command(BaseCommand):
    help = "Check the shop Switchboard answers for: `check [--ask QUESTION] [--customer ID]` (reads only)."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="action", required=True)
        checking = subcommands.add_parser("check", help="brand, documents, order system and MCP servers, read now")
        checking.add_argument("--ask", default="", help="a customer's question: the sections it finds")
        checking.add_argument("--customer", default="", help="a customer id: their orders, read through the shop")

    def handle(self, *args: Any, **options: Any) -> None:
        findings = shop_check(question=options["ask"], customer_id=options["customer"])
        for finding in findings:
            line = f"{finding.level.value:>4}  {finding.part:<12} {finding.text}"
            style = {Level.OK: self.style.SUCCESS, Level.WARN: self.style.WARNING, Level.FAIL: self.style.ERROR}
            self.stdout.write(style[finding.level](line))
        failed = sum(finding.level is Level.FAIL for finding in findings)
        if failed:
            raise CommandError(f"{failed} part(s) would fail a customer: see the FAIL lines above.")
