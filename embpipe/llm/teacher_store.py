"""Persistent teacher bookkeeping in one SQLite file: the response cache, the token ledger, the failures.

- ``responses``: content-addressed cache (key = sha256 of model, prompt version, messages and parameters).
  A rerun or a resumed run gets every completed call back for free.
- ``calls``: one ledger row per call (run, stage, model, tokens, cached or paid, cost when known).
- ``failures``: items whose teacher output stayed unusable after the retries, with the reason.
- ``settlements``: what a finished teacher stage was allowed and spent in its run, so the question stage can
  take up what the stages before it left (the latest settlement of each stage counts, so a resumed run, whose
  earlier stages are not rerun, sees what the run that built them left).

SQLite in WAL mode with one short transaction per write: concurrent runs and killed processes leave the
file consistent. API keys are never part of a key or a row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embpipe.llm.budget import budget_stage

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT, stage TEXT, text TEXT, logprobs TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, created REAL);
CREATE TABLE IF NOT EXISTS calls (
    run_id TEXT, stage TEXT, model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
    cached INTEGER, cost REAL, created REAL, scope TEXT, budget_stage TEXT);
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT, stage TEXT, item_id TEXT, reason TEXT, created REAL);
CREATE INDEX IF NOT EXISTS calls_run ON calls (run_id);
CREATE TABLE IF NOT EXISTS prompt_cuts (
    run_id TEXT, stage TEXT, characters INTEGER, context_tokens INTEGER, created REAL);
CREATE TABLE IF NOT EXISTS settlements (
    scope TEXT, stage TEXT, allowance INTEGER, spent INTEGER, created REAL);
"""
OPEN_ATTEMPTS = 50
# Columns added since the first schema, created in older files on open.
ADDED_COLUMNS = {"calls": {"scope": "TEXT", "budget_stage": "TEXT"}, "failures": {"owed": "INTEGER"}}


@dataclass(frozen=True)
class CachedReply:
    """A stored teacher reply."""

    text: str
    logprobs: list | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class UsageRow:
    """Token totals of one (stage, model) group."""

    stage: str
    model: str
    calls: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    cached_tokens: int = 0


def add_missing_columns(db: sqlite3.Connection) -> None:
    """The columns added since the first schema, in one write transaction: openers of a new file that race
    each see the columns the first one added, instead of adding them twice ("duplicate column name")."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class TeacherStore:
    """The SQLite file behind the cache, the ledger and the failure record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(OPEN_ATTEMPTS):
            try:
                return self._create()
            except sqlite3.OperationalError as error:  # two processes opening a new file at once: "locked"
                if "locked" not in str(error) or attempt == OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _create(self) -> None:
        """WAL mode, the tables and the columns added since the first schema (SQLite runs no busy handler for
        the journal-mode switch, so a process that opens the file while another creates it may see "locked")."""
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            add_missing_columns(db)
            db.execute("CREATE INDEX IF NOT EXISTS calls_scope ON calls (scope, budget_stage)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA busy_timeout=60000")
        return db

    def get(self, key: str) -> CachedReply | None:
        """The cached reply for ``key``, if any."""
        with self._connect() as db:
            row = db.execute(
                "SELECT text, logprobs, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return CachedReply(row[0], json.loads(row[1]) if row[1] else None, row[2], row[3])

    def put(self, key: str, model: str, stage: str, reply: CachedReply) -> None:
        """Store a reply (first writer wins; the content is the same for the same key)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    stage,
                    reply.text,
                    json.dumps(reply.logprobs) if reply.logprobs else None,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    time.time(),
                ),
            )

    def record_call(
        self, run_id: str, stage: str, model: str, reply: CachedReply, cached: bool, cost: float, scope: str = ""
    ) -> None:
        """Append one ledger row; ``scope`` is the budget scope it counts against (the run id when empty)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO calls (run_id, stage, model, prompt_tokens, completion_tokens, cached, cost, created,"
                " scope, budget_stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    stage,
                    model,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    int(cached),
                    cost,
                    time.time(),
                    scope or run_id,
                    budget_stage(stage),
                ),
            )

    def record_failure(self, run_id: str, stage: str, item_id: str, reason: str, owed: bool = False) -> None:
        """Record an item whose teacher output stayed unusable; ``owed``: the teacher was unavailable (not a bad
        reply), so the next run asks it again."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO failures (run_id, stage, item_id, reason, created, owed) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, stage, item_id, reason[:2000], time.time(), int(owed)),
            )

    def owed_items(self, run_id: str, stages: Sequence[str]) -> int:
        """Items of ``stages`` in ``run_id`` that failed because the teacher was unavailable."""
        marks = ", ".join("?" * len(stages))
        with self._connect() as db:
            row = db.execute(
                f"SELECT COUNT(DISTINCT stage || '/' || item_id) FROM failures WHERE run_id = ? AND owed = 1 "
                f"AND stage IN ({marks})",
                (run_id, *stages),
            ).fetchone()
        return int(row[0])

    def record_cut(self, run_id: str, stage: str, characters: int, context_tokens: int) -> None:
        """Record a prompt cut by ``characters`` to fit a ``context_tokens`` window."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO prompt_cuts VALUES (?, ?, ?, ?, ?)",
                (run_id, stage, characters, context_tokens, time.time()),
            )

    def cuts(self, run_id: str, stage: str) -> tuple[int, int]:
        """(prompts cut, characters cut) in ``run_id``'s ``stage``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(characters), 0) FROM prompt_cuts WHERE run_id = ? AND stage = ?",
                (run_id, stage),
            ).fetchone()
        return int(row[0]), int(row[1])

    def run_tokens(self, run_id: str) -> int:
        """Prompt + completion tokens of every call in ``run_id``, served from cache or not.

        The token budget counts these, so a resumed run stops at the same place as an uninterrupted one.
        """
        with self._connect() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM calls WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(row[0])

    def scope_tokens(self, scope: str, stage: str | None = None) -> int:
        """Prompt + completion tokens (cached or paid) counted against budget ``scope``, or only ``stage``'s
        share of it (``stage`` as in ``budget.STAGE_SHARES``)."""
        query = "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM calls WHERE scope = ?"
        args: tuple = (scope,)
        if stage is not None:
            query, args = query + " AND budget_stage = ?", (scope, stage)
        with self._connect() as db:
            return int(db.execute(query, args).fetchone()[0])

    def settle(self, scope: str, stage: str, allowance: int, spent: int) -> None:
        """Record that ``stage`` finished in budget ``scope`` having spent ``spent`` of ``allowance`` tokens."""
        with self._connect() as db:
            db.execute("INSERT INTO settlements VALUES (?, ?, ?, ?, ?)", (scope, stage, allowance, spent, time.time()))

    def unspent(self, stage: str) -> int:
        """What ``stage`` left of its allowance when it last finished (0 when it never did)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT allowance - spent FROM settlements WHERE stage = ? ORDER BY rowid DESC LIMIT 1", (stage,)
            ).fetchone()
        return max(0, int(row[0])) if row else 0

    def paid_tokens(self, run_id: str) -> int:
        """Prompt + completion tokens paid (not served from cache) in ``run_id``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM calls WHERE run_id = ? AND cached = 0",
                (run_id,),
            ).fetchone()
        return int(row[0])

    def paid_call_gaps(self, model: str, stage: str | None = None) -> list[float]:
        """Seconds between consecutive paid calls of ``model`` (in ``stage``) within each run: the pace it served."""
        query = "SELECT run_id, created FROM calls WHERE model = ? AND cached = 0"
        args: tuple = (model,)
        if stage:
            query, args = query + " AND stage = ?", (model, stage)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY run_id, created", args).fetchall()
        return [
            later[1] - earlier[1] for earlier, later in zip(rows[:-1], rows[1:], strict=True) if earlier[0] == later[0]
        ]

    def usage(self, run_id: str | None = None) -> list[UsageRow]:
        """Token totals per stage and model, for one run or for all runs."""
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        with self._connect() as db:
            rows = db.execute(
                "SELECT stage, model, COUNT(*), SUM(cached), SUM(CASE WHEN cached = 0 THEN prompt_tokens ELSE 0 END),"
                " SUM(CASE WHEN cached = 0 THEN completion_tokens ELSE 0 END), SUM(cost),"
                " SUM(CASE WHEN cached = 1 THEN prompt_tokens + completion_tokens ELSE 0 END)"
                f" FROM calls {where} GROUP BY stage, model ORDER BY stage, model",
                args,
            ).fetchall()
        return [UsageRow(r[0], r[1], r[2], r[3] or 0, r[4] or 0, r[5] or 0, r[6] or 0.0, r[7] or 0) for r in rows]

    def failures(self, run_id: str, stage: str | None = None) -> list[tuple[str, str, str]]:
        """(stage, item id, reason) of the failures recorded in ``run_id``."""
        query = "SELECT stage, item_id, reason FROM failures WHERE run_id = ?"
        args: tuple = (run_id,)
        if stage:
            query, args = query + " AND stage = ?", (run_id, stage)
        with self._connect() as db:
            return [tuple(r) for r in db.execute(query, args).fetchall()]
