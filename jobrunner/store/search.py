"""`--search` and `--tag` filters that an index serves, so they stay fast at a million jobs.

Both: `job_tag`, one row per (tag, job) (schema v11, migrations.py), so a tag filter walks one
tag's jobs in id order. A search, on SQLite: `job_search`, an FTS5 table of
trigrams (detail=none: candidates only, no positions) over each job's name, command and
callable, whose content is the job table itself; on PostgreSQL: `job_text`, that text in a
table of its own with a pg_trgm GIN index. Not an index on `job`: a claim or a
finish rewrites the job's row, and every index of the table takes the new version (a trigram
index on job cost claims and finishes 12%, measured; on a table of its own, nothing).

Either index only narrows: every candidate is checked again with the filter's own LIKE, so a
search finds exactly what it found before the index (substrings of three or more characters
use it; shorter ones read every row, as before).

PostgreSQL keeps both tables in the writing transaction: a new job's text is written by the
statement that inserts it (backends.WITH_TEXT: a trigger's call per row cost 2%), its tags and
every edit and delete by triggers. SQLite indexes a new job
after the fact, not in its submit: an FTS5 insert costs about as much
as the submit itself (enqueue fell to 0.45x with a trigger, measured), and even a trigger that
does nothing for a job without tags cost a submit 3.5%. The daemon indexes new jobs a batch at
a time (`index_new`, from its housekeeping), and a filter reads the jobs past the indexed mark
one by one, so it is exact at once and fast once the daemon has caught up. Edits and deletes
of indexed jobs reach the indexes through triggers (they cost a submit nothing).
"""

from __future__ import annotations

import re
from typing import Any

from jobrunner.store.backends import job_text
from jobrunner.store.db import Store, guarded

#: meta's key for the highest job id in job_search and job_tag (SQLite; new ids are always higher).
SEARCH_MARK = "search_indexed_to"
MARK_SQL = f"(SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{SEARCH_MARK}')"
#: PostgreSQL: the text job_text holds for a job (NEW: the row being written).
TEXT_OF_NEW = job_text("NEW.")
INDEX_BATCH = 2000  # jobs indexed per transaction: ~10 ms of the write lock


def is_sqlite(param: str) -> bool:
    """Filters build their SQL from the driver's placeholder alone: `?` is SQLite's."""
    return param == "?"


def like_pattern(text: str) -> str:
    return f"%{text}%"


def fts_query(text: str) -> str | None:
    """An FTS5 query that every row whose name, command or callable is LIKE '%text%' matches:
    the trigrams of the text's literal pieces (LIKE's % and _ match anything), all of them.
    None when no piece has three characters: the index cannot narrow it."""
    grams = sorted({piece[i : i + 3] for piece in re.split(r"[%_]", text) for i in range(len(piece) - 2)})
    if not grams:
        return None
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def text_check(param: str, table: str = "") -> str:
    """The filter itself: the text in the name, command or callable (LIKE: ASCII case-insensitive
    on SQLite, case-sensitive on PostgreSQL, as `list --search` always was)."""
    return f"({table}name LIKE {param} OR {table}command LIKE {param} OR {table}callable LIKE {param})"


def search_condition(param: str, text: str) -> tuple[str, list[Any]]:
    """A WHERE condition for `--search text`, checked on each row it is asked of: on SQLite the
    LIKE itself (store/pages.py has job_search drive a page instead, in id order; a sub-select
    of every candidate here would be read again by each statement of a bulk action's batches),
    on PostgreSQL narrowed by job_text's trigram index when the planner finds that cheaper."""
    pattern = like_pattern(text)
    check, params = text_check(param, "job."), [pattern] * 3
    if is_sqlite(param):
        return check, params
    narrowed = (
        f"EXISTS (SELECT 1 FROM job_text WHERE job_text.job_id = job.id AND job_text.text LIKE {param})"
    )
    return f"{narrowed} AND {check}", [pattern, *params]


def tag_check(row: str = "job") -> str:
    """SQLite: the job `row` has the tag `?` (one whole tag, ASCII case-insensitive), read from
    its own tags (job_tag may not have it yet)."""
    return f"({row}.tags <> '[]' AND EXISTS (SELECT 1 FROM {_tags_of(row)} WHERE value = ? COLLATE NOCASE))"


def tag_condition(param: str, tag: str) -> tuple[str, list[Any]]:
    """A WHERE condition for `--tag tag`, checked on each row it is asked of: one whole tag of
    the job's, ASCII case-insensitive on SQLite and case-sensitive on PostgreSQL, as
    `tags LIKE '%"tag"%'` was (store/pages.py has job_tag drive a page instead)."""
    if is_sqlite(param):
        return tag_check(), [tag]
    return f"EXISTS (SELECT 1 FROM job_tag WHERE job_tag.tag = {param} AND job_tag.job_id = job.id)", [tag]


@guarded
def index_new(store: Store, batch: int = INDEX_BATCH) -> int:
    """Put the text, tags, name and age of up to `batch` jobs past the mark into job_search,
    job_tag and the sort tables, and bring the table of tries, progress and finish times up to date with the
    events since their own mark (SQLite; one short write transaction); returns how many jobs and
    events it read, so a caller with a backlog comes back soon."""
    if not store.is_sqlite:
        return 0
    from jobrunner.store import sort_tables

    (behind,) = store.execute(f"SELECT MAX(id) > COALESCE({MARK_SQL}, 0) FROM job").fetchone()
    if not behind and not sort_tables.behind(store):  # a read, not a write transaction: an idle daemon
        return 0
    with store.write():
        (mark,) = store.execute(f"SELECT COALESCE({MARK_SQL}, 0)").fetchone()
        followed = sort_tables.follow(store, mark, batch) if sort_tables.present(store) else 0
        (upto, count) = store.execute(
            "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM job WHERE id > ? ORDER BY id LIMIT ?) AS b",
            (mark, batch),
        ).fetchone()
        if not count:
            return followed
        if has_search_table(store):
            store.execute(
                "INSERT INTO job_search (rowid, name, command, callable) "
                "SELECT id, name, command, callable FROM job WHERE id > ? AND id <= ?",
                (mark, upto),
            )
        store.execute(f"{_TAG_ROWS} AND job.id > ? AND job.id <= ?", (mark, upto))
        if sort_tables.present(store):
            sort_tables.fill(store, mark, upto)
        store.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (SEARCH_MARK, str(upto)))
    return int(count) + followed


@guarded
def unindexed(store: Store) -> int:
    """How many jobs a search or a tag filter reads one by one: not indexed yet (SQLite)."""
    if not store.is_sqlite:
        return 0
    return int(store.execute(f"SELECT COUNT(*) FROM job WHERE id > COALESCE({MARK_SQL}, 0)").fetchone()[0])


def has_search_table(store: Store) -> bool:
    found = store.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_search'").fetchone()
    return found is not None


# -- schema v11 (migrations.py calls these inside its transaction) -------------------------------

_SEARCH_VALUES = "{0}.id, {0}.name, {0}.command, {0}.callable"


def _tags_of(row: str) -> str:
    """The tags of `row` (NEW, OLD, job) as rows of json_each; a value that is not JSON, none."""
    return f"json_each(CASE WHEN json_valid({row}.tags) THEN {row}.tags ELSE '[]' END)"


SQLITE_SCHEMA = (
    # the text of name, command and callable, as trigrams; the rows stay in `job`
    "CREATE VIRTUAL TABLE IF NOT EXISTS job_search USING fts5(name, command, callable, content='job', "
    "content_rowid='id', tokenize='trigram', detail='none')",
    # an edit or a delete of an indexed job takes its old text out (FTS5 needs the old values)
    f"CREATE TRIGGER IF NOT EXISTS job_search_edit AFTER UPDATE OF name, command, callable ON job "
    f"WHEN OLD.id <= {MARK_SQL} BEGIN "
    "INSERT INTO job_search (job_search, rowid, name, command, callable) "
    f"VALUES ('delete', {_SEARCH_VALUES.format('OLD')}); "
    f"INSERT INTO job_search (rowid, name, command, callable) VALUES ({_SEARCH_VALUES.format('NEW')}); END",
    f"CREATE TRIGGER IF NOT EXISTS job_search_gone AFTER DELETE ON job WHEN OLD.id <= {MARK_SQL} BEGIN "
    "INSERT INTO job_search (job_search, rowid, name, command, callable) "
    f"VALUES ('delete', {_SEARCH_VALUES.format('OLD')}); END",
)
#: Every indexed job's tags into job_tag (a condition on job.id follows).
_TAG_ROWS = (f"INSERT OR IGNORE INTO job_tag (tag, job_id) SELECT t.value, job.id FROM job, {_tags_of('job')} AS t "
             "WHERE job.tags <> '[]'")  # fmt: skip
TAG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS job_tag (tag TEXT NOT NULL COLLATE NOCASE, job_id INTEGER NOT NULL, "
    "PRIMARY KEY (tag, job_id)) WITHOUT ROWID",
    f"CREATE TRIGGER IF NOT EXISTS job_tag_edit AFTER UPDATE OF tags ON job WHEN OLD.id <= {MARK_SQL} "
    "AND OLD.tags IS NOT NEW.tags BEGIN "
    f"DELETE FROM job_tag WHERE job_id = OLD.id AND tag IN (SELECT value FROM {_tags_of('OLD')}); "
    f"INSERT OR IGNORE INTO job_tag (tag, job_id) SELECT value, NEW.id FROM {_tags_of('NEW')}; END",
    f"CREATE TRIGGER IF NOT EXISTS job_tag_gone AFTER DELETE ON job WHEN OLD.id <= {MARK_SQL} "
    "AND OLD.tags <> '[]' BEGIN "
    f"DELETE FROM job_tag WHERE job_id = OLD.id AND tag IN (SELECT value FROM {_tags_of('OLD')}); END",
)


def create_sqlite_indexes(store: Store) -> None:
    """job_tag and job_search with every job there is (an existing database: about 5 s per
    million jobs, once), the mark past them, and the triggers that keep edits and deletes in
    step. An SQLite built without FTS5's trigram tokenizer (before 3.34) gets job_tag alone:
    searches read every row, as before."""
    from jobrunner.errors import StoreError

    store.execute(
        "INSERT OR REPLACE INTO meta (key, value) SELECT ?, CAST(COALESCE(MAX(id), 0) AS TEXT) FROM job",
        (SEARCH_MARK,),
    )
    for sql in TAG_SCHEMA:
        store.execute(sql)
    store.execute(_TAG_ROWS)
    try:
        with store.db.atomic():  # a savepoint: a missing module or tokenizer undoes this step alone
            store.execute(SQLITE_SCHEMA[0])
    except StoreError as exc:
        if "fts5" in str(exc).lower() or "tokenizer" in str(exc).lower():
            return
        raise
    store.execute("INSERT INTO job_search (job_search) VALUES ('rebuild')")
    for sql in SQLITE_SCHEMA[1:]:
        store.execute(sql)


PG_TAG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS job_tag (tag TEXT NOT NULL, job_id INTEGER NOT NULL, PRIMARY KEY (tag, job_id))",
    "CREATE OR REPLACE FUNCTION job_tag_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP <> 'INSERT' THEN DELETE FROM job_tag WHERE job_id = OLD.id "
    "AND tag IN (SELECT jsonb_array_elements_text(OLD.tags::jsonb)); END IF; "
    "IF TG_OP <> 'DELETE' THEN INSERT INTO job_tag (tag, job_id) "
    "SELECT DISTINCT t, NEW.id FROM jsonb_array_elements_text(NEW.tags::jsonb) AS t ON CONFLICT DO NOTHING; END IF; "
    "RETURN NULL; END $$",
    # the WHEN is checked without calling the function: a job without tags costs nothing more
    "DROP TRIGGER IF EXISTS job_tag_new ON job",  # a migration run again (one cut short) makes it anew
    "CREATE TRIGGER job_tag_new AFTER INSERT ON job FOR EACH ROW WHEN (NEW.tags <> '[]') "
    "EXECUTE FUNCTION job_tag_sync()",
    "DROP TRIGGER IF EXISTS job_tag_edit ON job",
    "CREATE TRIGGER job_tag_edit AFTER UPDATE OF tags ON job FOR EACH ROW "
    "WHEN (OLD.tags IS DISTINCT FROM NEW.tags) EXECUTE FUNCTION job_tag_sync()",
    "DROP TRIGGER IF EXISTS job_tag_gone ON job",
    "CREATE TRIGGER job_tag_gone AFTER DELETE ON job FOR EACH ROW WHEN (OLD.tags <> '[]') "
    "EXECUTE FUNCTION job_tag_sync()",
    "INSERT INTO job_tag (tag, job_id) SELECT DISTINCT t, id FROM job, jsonb_array_elements_text(tags::jsonb) AS t "
    "WHERE tags <> '[]' ON CONFLICT DO NOTHING",
)


PG_TEXT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS job_text (job_id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
    "CREATE OR REPLACE FUNCTION job_text_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'DELETE' THEN DELETE FROM job_text WHERE job_id = OLD.id; RETURN NULL; END IF; "
    f"INSERT INTO job_text (job_id, text) VALUES (NEW.id, {TEXT_OF_NEW}) "
    "ON CONFLICT (job_id) DO UPDATE SET text = EXCLUDED.text; RETURN NULL; END $$",
    # a new job's text: written by the statement that inserts it (backends.WITH_TEXT; schema v14)
    "DROP TRIGGER IF EXISTS job_text_new ON job",
    "DROP TRIGGER IF EXISTS job_text_edit ON job",
    "CREATE TRIGGER job_text_edit AFTER UPDATE OF name, command, callable ON job FOR EACH ROW "
    "EXECUTE FUNCTION job_text_sync()",
    "DROP TRIGGER IF EXISTS job_text_gone ON job",
    "CREATE TRIGGER job_text_gone AFTER DELETE ON job FOR EACH ROW EXECUTE FUNCTION job_text_sync()",
    f"INSERT INTO job_text (job_id, text) SELECT id, {job_text()} FROM job "
    "ON CONFLICT (job_id) DO NOTHING",
)


def create_postgres_indexes(store: Store) -> None:
    """job_tag and job_text with their triggers, and job_text's trigram index where the server
    has pg_trgm (a contrib module; trusted, so the database's owner may create it): without
    it, a search reads every job's text, as before."""
    from jobrunner.errors import StoreError

    for sql in (*PG_TAG_SCHEMA, *PG_TEXT_SCHEMA):
        store.execute(sql)
    try:
        with store.db.atomic():  # a savepoint: the migration goes on without the extension
            store.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except StoreError:
        pass
    else:
        store.execute(
            "CREATE INDEX IF NOT EXISTS job_text_trigrams ON job_text USING gin (text gin_trgm_ops)"
        )
    # statistics now, not when autovacuum comes by: without them the planner takes a tag every
    # job has, or a word in every job's text, for a rare one and reads all of it to sort it
    store.execute("ANALYZE job_tag")
    store.execute("ANALYZE job_text")
