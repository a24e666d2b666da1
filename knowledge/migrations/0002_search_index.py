"""The search index, by database: a GIN index over Section.search on PostgreSQL (the vector is written by
knowledge.search.section_index); on SQLite an FTS5 table kept in step with the rows by triggers (staff-only
sections are never in it), so imports, admin edits and flushes need nothing more."""

from django.db import migrations

_INSERT = (
    "INSERT INTO knowledge_section_fts (rowid, title, heading, body) "
    "SELECT new.id, d.title, new.heading, new.body FROM knowledge_document d "
    "WHERE d.id = new.document_id AND NOT new.staff_only; "
)
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER knowledge_section_fts_insert AFTER INSERT ON knowledge_section BEGIN {_INSERT} END",
    "CREATE TRIGGER knowledge_section_fts_delete AFTER DELETE ON knowledge_section BEGIN "
    "DELETE FROM knowledge_section_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER knowledge_section_fts_update AFTER UPDATE ON knowledge_section BEGIN "
    f"DELETE FROM knowledge_section_fts WHERE rowid = old.id; {_INSERT} END",
    "CREATE TRIGGER knowledge_section_fts_title AFTER UPDATE OF title ON knowledge_document BEGIN "
    "UPDATE knowledge_section_fts SET title = new.title "
    "WHERE rowid IN (SELECT id FROM knowledge_section WHERE document_id = new.id); END",
]


def index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX knowledge_section_search_gin ON knowledge_section USING gin (search)")
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            "CREATE VIRTUAL TABLE knowledge_section_fts USING fts5("
            "title, heading, body, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement)


def index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS knowledge_section_search_gin")
    elif schema_editor.connection.vendor == "sqlite":
        for name in ("insert", "delete", "update", "title"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS knowledge_section_fts_{name}")
        schema_editor.execute("DROP TABLE IF EXISTS knowledge_section_fts")


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0001_initial")]
    operations = [migrations.RunPython(index_create, index_drop)]
