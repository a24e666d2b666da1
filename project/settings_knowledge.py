"""Settings of the knowledge base (knowledge/: the help centre's documents, searched by the database).

Part of `project.settings` (which imports every name here; kept apart only for the modules' size), read from the
environment with the same helpers; docs/knowledge.md explains them.
"""

from __future__ import annotations

from project.env import env_bool, env_int, env_list, env_str

# --- Knowledge base ------------------------------------------------------------------
# The language of the help centre (documents that do not name one; the questions searched).
KNOWLEDGE_LANGUAGE = env_str("KNOWLEDGE_LANGUAGE", "en")
# After `migrate`, an empty knowledge base gets the demo shop's documents: a fresh install answers at once. Off: an
# empty knowledge base stays empty until you import your own (every question then goes to a person).
KNOWLEDGE_DEMO_WHEN_EMPTY = env_bool("KNOWLEDGE_DEMO_WHEN_EMPTY", True)
# PostgreSQL text-search configuration per language ("de=german,fr=french" adds or overrides); others use simple.
KNOWLEDGE_SEARCH_CONFIGS = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
    "pt": "portuguese", "sv": "swedish", "da": "danish", "fi": "finnish", "no": "norwegian",
    **dict(item.split("=", 1) for item in env_list("KNOWLEDGE_SEARCH_CONFIGS") if "=" in item),
}  # fmt: skip
# The largest file `manage.py knowledge import` reads (bytes; default 5 MB); a bigger one stops the import with an
# error naming it. Help-centre pages are a few KB: the cap keeps a stray export, log or binary dump from being read
# into memory and indexed as one giant section (which would also crowd the search). Raise it for long manuals, or
# better split them into one file per topic.
KNOWLEDGE_MAX_FILE_BYTES = env_int("KNOWLEDGE_MAX_FILE_BYTES", 5 * 1024 * 1024)
