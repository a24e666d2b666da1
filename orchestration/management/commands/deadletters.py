"""manage.py deadletters list [--all] | replay ID [ID ...]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestration.deadletters import dead_letter_replay
from orchestration.models import DeadLetter


class Command(BaseCommand):
    help = "List dead letters, or replay them (each at most once)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="open dead letters, newest first")
        listing.add_argument("--all", action="store_true", help="include replayed ones")
        replay = sub.add_parser("replay", help="replay dead letters by id")
        replay.add_argument("ids", nargs="+", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            letters = DeadLetter.objects.all()
            if not options["all"]:
                letters = letters.filter(status=DeadLetter.Status.OPEN)
            if not letters.exists():
                self.stdout.write("No dead letters.")
                return
            for letter in letters[:200]:
                self.stdout.write(
                    f"{letter.id:>6}  {letter.created_at:%Y-%m-%d %H:%M:%S}  {letter.status:<8}  "
                    f"{letter.task_name:<20}  {letter.reason:<18}  run={letter.run_id or '-'}  "
                    f"trace={letter.trace_id or '-'}\n        {letter.error[:200]}"
                )
            return
        for letter_id in options["ids"]:
            try:
                self.stdout.write(dead_letter_replay(letter_id))
            except DeadLetter.DoesNotExist as exc:
                raise CommandError(f"No dead letter {letter_id}.") from exc
