"""Finding incidents: the list's filters, full-text search and sort orders (also used by the CSV export).

Full-text search works on both databases we run on:

- PostgreSQL: ``websearch_to_tsquery`` against a weighted ``tsvector`` of title, symptom, cause and
  remedy (english stemming), ranked with ``ts_rank``. Migration 0002 builds a GIN index on exactly
  the expression of ``_pg_vector()``; change one and you must change (re-migrate) the other.
- SQLite: an FTS5 table ``incidents_incident_fts`` (porter stemming), an external-content index of
  the same four columns kept in sync by triggers (migration 0002), ranked with ``bm25``.

User text never reaches FTS5 as query syntax: it is cut into words and each word is quoted.
"""
from __future__ import annotations

import re
from datetime import date

from django.db import connection
from django.db.models import Case, DurationField, ExpressionWrapper, F, FloatField, IntegerField, QuerySet, Value, When
from django.db.models.expressions import RawSQL

from apps.incidents.models import Incident

FTS_TABLE = "incidents_incident_fts"
MAX_QUERY_CHARS = 200
# bm25 column weights (title, symptom, cause, remedy), in step with the PostgreSQL weights A, B, C, C.
_BM25_WEIGHTS = "10.0, 4.0, 2.0, 2.0"
_WORD = re.compile(r"\w+", re.UNICODE)

# ?sort= values the list accepts; anything else falls back to the default (newest first).
SORTS = ("created", "priority", "status", "asset", "downtime")
DEFAULT_SORT = "-created"
_STATUS_ORDER = {s: i for i, s in enumerate(Incident.Status.values)}  # open → in progress → resolved → closed


def _pg_vector():
    from django.contrib.postgres.search import SearchVector

    return (
        SearchVector("title", weight="A", config="english")
        + SearchVector("symptom", weight="B", config="english")
        + SearchVector("cause", "remedy", weight="C", config="english")
    )


def fts_match_expression(text: str) -> str:
    """An FTS5 MATCH string that only ever means "all these words".

    Each whitespace-separated word becomes a quoted phrase of its letters and digits
    ("WXT536-01" → ``"WXT536 01"``), so quotes, brackets, ``AND``/``OR``/``NOT``, ``*`` or ``:``
    in the user's text are plain words or dropped, never FTS syntax. Empty when no word is left.
    """
    phrases = []
    for chunk in text[:MAX_QUERY_CHARS].split():
        words = _WORD.findall(chunk)
        if words:
            # No quote can survive \w+, but double any anyway: it is the FTS5 escape for '"'.
            phrases.append('"' + " ".join(w.replace('"', '""') for w in words) + '"')
    return " ".join(phrases)


def incidents_search(qs: QuerySet[Incident], text: str) -> QuerySet[Incident]:
    """``qs`` narrowed to incidents matching ``text``, annotated with ``search_rank`` (higher is better).

    Blank text (or text without a single word) leaves ``qs`` as it is, unannotated.
    """
    text = (text or "").replace("\x00", " ").strip()[:MAX_QUERY_CHARS]
    if not text:
        return qs
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank

        query = SearchQuery(text, search_type="websearch", config="english")
        vector = _pg_vector()
        # alias(), not annotate(): the vector is only for the WHERE, where the GIN index serves it.
        return qs.alias(search_vector=vector).filter(search_vector=query).annotate(
            search_rank=SearchRank(vector, query)
        )
    match = fts_match_expression(text)
    if not match:
        return qs
    table = Incident._meta.db_table
    matching = RawSQL(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [match])
    # bm25() is lower-is-better and only callable inside a MATCH query: a correlated subquery.
    rank = RawSQL(
        f"SELECT -bm25({FTS_TABLE}, {_BM25_WEIGHTS}) FROM {FTS_TABLE} "
        f'WHERE {FTS_TABLE} MATCH %s AND {FTS_TABLE}.rowid = "{table}"."id"',
        [match],
        output_field=FloatField(),
    )
    return qs.filter(pk__in=matching).annotate(search_rank=rank)


def incidents_filter(
    qs: QuerySet[Incident],
    *,
    asset=None,
    status: str = "",
    priority: str = "",
    reporter=None,
    created_from: date | None = None,
    created_to: date | None = None,
) -> QuerySet[Incident]:
    """Narrow ``qs`` by the list's filters; empty values are ignored. Dates are inclusive, local time."""
    if asset is not None:
        qs = qs.filter(asset=asset)
    if status:
        qs = qs.filter(status=status)
    if priority:
        qs = qs.filter(priority=priority)
    if reporter is not None:
        qs = qs.filter(reporter=reporter)
    if created_from:
        qs = qs.filter(created__date__gte=created_from)
    if created_to:
        qs = qs.filter(created__date__lte=created_to)
    return qs


def sort_key(sort: str | None) -> str:
    """The accepted form of a ?sort= value: one of SORTS, optionally prefixed by "-"."""
    key = (sort or "").removeprefix("-")
    return sort if key in SORTS else DEFAULT_SORT


def incidents_sort(qs: QuerySet[Incident], sort: str | None) -> QuerySet[Incident]:
    """Order ``qs`` by a whitelisted key ("priority", "-downtime", …).

    "priority" puts critical first and "status" follows the workflow (open first); "-" reverses.
    Without an explicit sort, search results come best match first. Ties break newest first, and
    rows without a value (no asset, no downtime) always come last.
    """
    if not sort and "search_rank" in qs.query.annotations:
        return qs.order_by(F("search_rank").desc(nulls_last=True), "-created", "-pk")
    sort = sort_key(sort)
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key == "created":
        return qs.order_by(sort, "-pk" if descending else "pk")
    if key == "priority":
        qs = qs.annotate(
            sort_value=Case(
                *[When(priority=p, then=Value(i)) for p, i in Incident.PRIORITY_ORDER.items()],
                default=Value(len(Incident.PRIORITY_ORDER)),
                output_field=IntegerField(),
            )
        )
    elif key == "status":
        qs = qs.annotate(
            sort_value=Case(
                *[When(status=s, then=Value(i)) for s, i in _STATUS_ORDER.items()],
                default=Value(len(_STATUS_ORDER)),
                output_field=IntegerField(),
            )
        )
    elif key == "asset":
        qs = qs.annotate(sort_value=F("asset__asset_id"))
    else:  # downtime
        qs = qs.annotate(
            sort_value=ExpressionWrapper(F("downtime_end") - F("downtime_start"), output_field=DurationField())
        )
    value = F("sort_value").desc(nulls_last=True) if descending else F("sort_value").asc(nulls_last=True)
    return qs.order_by(value, "-created", "-pk")
