"""The durable judgment store: one SQLite row per judge call, written the moment the call ends.

A row is keyed by (judge model, protocol template version, instruction, the two outputs as shown, order), so a
rerun — or a run killed with SIGKILL and started again — looks every planned call up first, never repeats one that
succeeded and retries the ones that failed. The database runs in WAL mode with ``synchronous=NORMAL``: each commit
survives the process being killed (only a power loss can take back the last commits), and readers such as
``prefcli eval status`` never block the writer.

One writer per store. A writable store holds an exclusive ``flock`` on ``STORE.lock`` while it is open: a second
run on the same store (two ``eval alpaca`` on one ``--output``) stops at once with one line instead of paying the
judge a second time for the same calls. The lock goes away with the process, even after ``kill -9``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    key          TEXT PRIMARY KEY,
    judge        TEXT NOT NULL,
    protocol     TEXT NOT NULL,
    instruction  TEXT NOT NULL,
    output_1     TEXT NOT NULL,
    output_2     TEXT NOT NULL,
    model_first  INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    reply        TEXT,
    top_logprobs TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL,
    usage        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS judgments_protocol_status ON judgments (protocol, status);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def judgment_key(judge: str, protocol: str, instruction: str, output_1: str, output_2: str,
                 model_first: bool) -> str:
    """sha256 over the fields that make a judge call what it is."""
    payload = json.dumps([judge, protocol, instruction, output_1, output_2, bool(model_first)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def finite_json(value) -> str:
    """JSON text of ``value`` with NaN and infinities written as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""

    def clean(item):
        if isinstance(item, float) and not math.isfinite(item):
            return str(item)
        if isinstance(item, dict):
            return {key: clean(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), ensure_ascii=False, allow_nan=False)


def acquire_store_lock(store_path: Path):
    """An open file holding an exclusive lock on ``STORE.lock``; ConfigError (exit 2) when another process holds
    it. Closing the file releases the lock."""
    lock_path = store_path.with_name(store_path.name + ".lock")
    handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise ConfigError(f"{store_path}: another prefcli eval run{f' (pid {holder})' if holder else ''} is "
                          "using this judgment store; wait for it to finish (a rerun then reuses its judgments) "
                          "or pass another --output/--store") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@dataclass(frozen=True)
class StoredJudgment:
    key: str
    status: str
    reply: str | None
    top_logprobs: list[dict] | None
    error: str | None
    attempts: int


class JudgmentStore:
    """``with JudgmentStore(path) as store: ...``; every ``record_*`` call is committed before it returns."""

    def __init__(self, path: str | Path, *, readonly: bool = False, lock=None):
        """``lock``: a lock from :func:`acquire_store_lock` taken earlier (e.g. before generating outputs); the
        store then owns it and releases it on close."""
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise ConfigError(f"{self.path}: no judgment store here")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = lock if lock is not None else acquire_store_lock(self.path)
        try:
            # check_same_thread=False: the judging loop commits from one writer thread (never two at once)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(judgments)")}
            if "usage" not in columns:  # a store written before token counts were kept
                self._db.execute("ALTER TABLE judgments ADD COLUMN usage TEXT")
            self._db.execute("INSERT OR IGNORE INTO store_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as error:
            self._lock.close()
            raise ConfigError(f"{self.path}: not a usable judgment store: {error}") from None

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()  # closing the descriptor releases the flock

    def lookup(self, keys: list[str]) -> dict[str, StoredJudgment]:
        """The stored rows among ``keys``."""
        found: dict[str, StoredJudgment] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(
                "SELECT key, status, reply, top_logprobs, error, attempts FROM judgments WHERE key IN "
                f"({','.join('?' * len(chunk))})", chunk)
            for key, status, reply, top, error, attempts in rows:
                found[key] = StoredJudgment(key, status, reply, json.loads(top) if top else None, error, attempts)
        return found

    def record(self, key: str, *, judge: str, protocol: str, instruction: str, output_1: str, output_2: str,
               model_first: bool, status: str, reply: str | None, top_logprobs: list[dict] | None,
               error: str | None, attempts: int, usage: dict | None = None) -> None:
        """Insert or update one call's row (attempts and tokens add up across runs); a row already ``ok`` is
        never overwritten. Non-finite numbers are stored as strings, so the row stays valid JSON."""
        now = time.time()
        self._db.execute(
            """INSERT INTO judgments (key, judge, protocol, instruction, output_1, output_2, model_first, status,
                                      reply, top_logprobs, error, attempts, usage, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(key) DO UPDATE SET status = excluded.status, reply = excluded.reply,
                   top_logprobs = excluded.top_logprobs, error = excluded.error,
                   attempts = judgments.attempts + excluded.attempts, usage = excluded.usage,
                   updated_at = excluded.updated_at
               WHERE judgments.status != 'ok'""",
            (key, judge, protocol, instruction, output_1, output_2, int(model_first), status, reply,
             finite_json(top_logprobs) if top_logprobs else None, error, attempts,
             finite_json(usage) if usage else None, now, now))

    def invalidate(self, keys: list[str], error: str) -> None:
        """Mark stored ``ok`` rows whose reply no longer yields a valid score (e.g. a NaN log-prob stored by an
        older version) as failed, so this run judges them again."""
        for key in keys:
            self._db.execute("UPDATE judgments SET status = 'failed', error = ?, updated_at = ? WHERE key = ?",
                             (error, time.time(), key))

    def counts(self) -> list[tuple[str, str, str, int, int]]:
        """(judge, protocol, status, rows, attempts) for every group in the store."""
        return list(self._db.execute(
            "SELECT judge, protocol, status, COUNT(*), SUM(attempts) FROM judgments "
            "GROUP BY judge, protocol, status ORDER BY judge, protocol, status"))

    def failures(self, limit: int = 5) -> list[tuple[str, str | None]]:
        """(error, reply) of the most recent failed rows, to show what went wrong."""
        return list(self._db.execute(
            "SELECT error, reply FROM judgments WHERE status = 'failed' ORDER BY updated_at DESC LIMIT ?", (limit,)))
