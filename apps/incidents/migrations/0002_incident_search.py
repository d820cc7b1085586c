"""Full-text search over incidents (title, symptom, cause, remedy), per database.

PostgreSQL: a GIN index on the weighted english tsvector that ``apps.incidents.search`` queries.
The expression is spelled out here (migrations must not follow later code changes) and must stay
identical to ``search._pg_vector()``, or the planner cannot use the index.

SQLite: an FTS5 table with porter stemming, external content on incidents_incident (no copy of
the text), kept in sync by triggers and filled from the existing rows.

Neither is part of the model state, so ``makemigrations`` never sees them. Note for later SQLite
migrations: if Django has to *rebuild* incidents_incident (some AlterField operations), the table's
triggers are dropped with the old table; re-run ``_sqlite_forwards`` in that migration.
"""
from django.db import migrations

FTS = "incidents_incident_fts"
COLUMNS = "title, symptom, cause, remedy"
PG_INDEX = "incident_search_gin"

SQLITE_CREATE = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS} USING fts5("
    f"{COLUMNS}, content='incidents_incident', content_rowid='id', tokenize='porter unicode61')",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS}_ai AFTER INSERT ON incidents_incident BEGIN
        INSERT INTO {FTS}(rowid, {COLUMNS}) VALUES (new.id, new.title, new.symptom, new.cause, new.remedy);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS {FTS}_ad AFTER DELETE ON incidents_incident BEGIN
        INSERT INTO {FTS}({FTS}, rowid, {COLUMNS}) VALUES ('delete', old.id, old.title, old.symptom, old.cause, old.remedy);
    END""",
    # Only when an indexed column changes: status moves and other edits leave the index alone.
    f"""CREATE TRIGGER IF NOT EXISTS {FTS}_au AFTER UPDATE OF {COLUMNS} ON incidents_incident BEGIN
        INSERT INTO {FTS}({FTS}, rowid, {COLUMNS}) VALUES ('delete', old.id, old.title, old.symptom, old.cause, old.remedy);
        INSERT INTO {FTS}(rowid, {COLUMNS}) VALUES (new.id, new.title, new.symptom, new.cause, new.remedy);
    END""",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {FTS}_ai",
    f"DROP TRIGGER IF EXISTS {FTS}_ad",
    f"DROP TRIGGER IF EXISTS {FTS}_au",
    f"DROP TABLE IF EXISTS {FTS}",
]


def _pg_index():
    from django.contrib.postgres.indexes import GinIndex
    from django.contrib.postgres.search import SearchVector

    vector = (
        SearchVector("title", weight="A", config="english")
        + SearchVector("symptom", weight="B", config="english")
        + SearchVector("cause", "remedy", weight="C", config="english")
    )
    return GinIndex(vector, name=PG_INDEX)


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.add_index(apps.get_model("incidents", "Incident"), _pg_index())
    elif vendor == "sqlite":
        for sql in SQLITE_CREATE:
            schema_editor.execute(sql)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("incidents", "Incident"), _pg_index())
    elif vendor == "sqlite":
        for sql in SQLITE_DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
