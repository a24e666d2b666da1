"""manage.py knowledge import PATH...: load help-centre documents (Markdown, HTML, plain text) into the knowledge
base; re-importing updates by source and is idempotent; --prune removes documents not found in the paths (refused
when the paths hold no importable file). A file that cannot be imported stops it with an error naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.services import knowledge_import
from knowledge.text import language_normalise


class Command(BaseCommand):
    help = "Manage the knowledge base: `import PATH...` (files or folders of .md, .html, .txt)."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="action", required=True)
        importing = subcommands.add_parser("import", help="import files and folders (recursively)")
        importing.add_argument("paths", nargs="+", type=Path)
        importing.add_argument(
            "--language",
            default=settings.KNOWLEDGE_LANGUAGE,
            type=language_normalise,
            help="language of documents that do not name one (HTML lang=), as its primary subtag (en-US -> en); "
            "default KNOWLEDGE_LANGUAGE",
        )
        importing.add_argument(
            "--prune",
            action="store_true",
            help="remove documents not found in these paths (the paths are the whole base)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = knowledge_import(options["paths"], language=options["language"], prune=options["prune"])
        except (OSError, ValueError) as error:  # a missing, unreadable or refused file (named), an empty --prune
            raise CommandError(str(error)) from error
        if options["verbosity"] > 1:
            for outcome in ("added", "updated", "removed"):
                for source in getattr(summary, outcome):
                    self.stdout.write(f"  {outcome}: {source}")
        self.stdout.write(f"Knowledge base: {summary}.")
