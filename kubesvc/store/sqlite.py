"""Embedded SQLite backend for the revisioned store.

Two tables: `kv` (the live keys) and `log` (one row per revision, kept until compaction) so
watchers can resume from any revision that has not been compacted, and lists can be read at
any such revision (a paged list reads every page at its first page's revision). Compaction
keeps each live key's newest write at or before the compacted revision, as etcd's does.
WAL journaling with synchronous=NORMAL: a commit is in the WAL before the call returns, so
killing the process (even with SIGKILL) loses nothing that was acknowledged.

The live keys are also held in memory, grouped by their first two path segments, so lists
never touch the disk. SQLite calls are synchronous and short; they run on the event loop
thread, which also makes "read history, then subscribe" atomic for watchers. Values of
256 KiB or more are committed on a writer thread with its own connection while the loop
goes on; other writes wait for it, and a change becomes visible (memory, revision, watch
history, watchers) only once it is applied on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubesvc.store.base import (
    Claimed,
    Claims,
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    KeyValue,
    QueuedWatch,
    RevisionMismatch,
    side_keys,
)

Change = tuple[KeyValue, bool, KeyValue | None]  # (new or deleted value, deleted, before)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY, value BLOB NOT NULL,
  create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
  rev INTEGER PRIMARY KEY, key TEXT NOT NULL, deleted INTEGER NOT NULL, value BLOB NOT NULL,
  create_rev INTEGER NOT NULL, version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

LARGE_WRITE = 256 * 1024  # values at least this large are committed off the event loop


def _private(path: Path) -> None:
    """The database readable by its owner only: created 0600 (SQLite gives its -wal and
    -shm files the database's mode), and older files made so."""
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            f.chmod(0o600)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _bucket(key: str) -> str:
    """'/registry/services/default/x' -> '/registry/services/'."""
    parts = key.split("/", 3)
    return "/".join(parts[:3]) + "/" if len(parts) > 3 else key


class SQLiteWatch(QueuedWatch):
    def __init__(self, store: SQLiteStore, prefix: str, backlog: list[Event]) -> None:
        super().__init__()
        self._store = store
        self.prefix = prefix
        for ev in backlog:
            self._queue.put_nowait(ev)

    @property
    def progress_revision(self) -> int:
        # changes reach every watcher as they are applied, before anything else runs
        return self._store.revision

    def _closed(self) -> None:
        self._store._watchers.discard(self)


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        _private(Path(path))
        self._path = Path(path)
        self._db = _connect(self._path)
        self._db.executescript(_SCHEMA)
        self._buckets: dict[str, dict[str, KeyValue]] = {}
        self._watchers: set[SQLiteWatch] = set()
        self._large_write: asyncio.Future[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._large_db: sqlite3.Connection | None = None
        for key, value, create_rev, mod_rev, version in self._db.execute("SELECT * FROM kv"):
            kv = KeyValue(key, bytes(value), create_rev, mod_rev, version)
            self._buckets.setdefault(_bucket(key), {})[key] = kv
        self._revision = self._meta("revision")
        row = self._db.execute("SELECT MAX(rev) FROM log").fetchone()
        self._revision = max(self._revision, row[0] or 0)
        self._compacted = self._meta("compacted")

    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    def count(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def _live(self, key: str) -> KeyValue | None:
        bucket = self._buckets.get(_bucket(key))
        return bucket.get(key) if bucket else None

    async def get(self, key: str) -> KeyValue | None:
        return self._live(key)

    async def range(
        self, prefix: str, revision: int = 0, start_after: str = ""
    ) -> tuple[list[KeyValue], int]:
        if not revision or revision >= self._revision:
            items = self.range_now(prefix)
            if start_after:
                items = [kv for kv in items if kv.key > start_after]
            return items, self._revision
        return self._range_at(prefix, revision, start_after), revision

    def _range_at(self, prefix: str, revision: int, start_after: str) -> list[KeyValue]:
        """The keys under prefix as they were at an older revision: today's keys, with every
        key written since put back as it was (from the log)."""
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        low = max(prefix, start_after + "\0") if start_after else prefix
        at = {kv.key: kv for kv in self.range_now(prefix) if kv.key >= low}
        changed = self._db.execute(
            "SELECT DISTINCT key FROM log WHERE rev > ? AND key >= ? AND key < ?",
            (revision, low, prefix + "\uffff"),
        ).fetchall()
        for (key,) in changed:
            row = self._db.execute(
                "SELECT rev, deleted, value, create_rev, version FROM log "
                "WHERE key = ? AND rev <= ? ORDER BY rev DESC LIMIT 1",
                (key, revision),
            ).fetchone()
            if row is not None:
                rev, deleted, value, create_rev, version = row
                if deleted:
                    at.pop(key, None)
                else:
                    at[key] = KeyValue(key, bytes(value), create_rev, rev, version)
                continue
            first = self._db.execute(
                "SELECT deleted, version FROM log WHERE key = ? AND rev > ? ORDER BY rev LIMIT 1",
                (key, revision),
            ).fetchone()
            if first is not None and not first[0] and first[1] == 1:
                at.pop(key, None)  # created after the revision
            else:  # its value then is no longer kept
                raise Compacted(revision, self._compacted)
        return [at[k] for k in sorted(at)]

    def range_now(self, prefix: str) -> list[KeyValue]:
        if prefix.count("/") >= 3:
            bucket = self._buckets.get(_bucket(prefix), {})
            items = [kv for k, kv in bucket.items() if k.startswith(prefix)]
        else:
            items = [
                kv for b in self._buckets.values() for k, kv in b.items() if k.startswith(prefix)
            ]
        items.sort(key=lambda kv: kv.key)
        return items

    def _commit(self, changes: list[Change], db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for kv, deleted, _ in changes:
                db.execute(
                    "INSERT INTO log VALUES (?,?,?,?,?,?)",
                    (
                        kv.mod_revision,
                        kv.key,
                        int(deleted),
                        kv.value,
                        kv.create_revision,
                        kv.version,
                    ),
                )
                if deleted:
                    db.execute("DELETE FROM kv WHERE key=?", (kv.key,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO kv VALUES (?,?,?,?,?)",
                        (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def _write(self, changes: list[Change]) -> None:
        """Commit in one transaction, then make the changes visible: memory, revision,
        watchers. A large value is committed on the store's own thread (writing megabytes
        would hold the event loop for tens of milliseconds); other writes wait for it, so
        revisions stay in order."""
        if sum(len(kv.value) for kv, _, _ in changes) < LARGE_WRITE:
            self._commit(changes, self._db)
        else:
            done = asyncio.get_running_loop().create_future()
            self._large_write = done
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._writer(), self._commit, changes, self._writer_db()
                )
            finally:
                self._large_write = None
                done.set_result(None)
        for change in changes:
            self._apply(*change)

    def _apply(self, kv: KeyValue, deleted: bool, prev: KeyValue | None) -> None:
        self._revision = kv.mod_revision
        bucket = self._buckets.setdefault(_bucket(kv.key), {})
        if deleted:
            bucket.pop(kv.key, None)
        else:
            bucket[kv.key] = kv
        ev = Event("DELETE" if deleted else "PUT", kv, not deleted and kv.version == 1, prev)
        for w in list(self._watchers):
            if kv.key.startswith(w.prefix):
                w.push(ev)

    def _writer(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        return self._executor

    def _writer_db(self) -> sqlite3.Connection:
        """The writer thread's own connection: the loop's reads (watch history) never share a
        connection, or a transaction, with a commit in progress."""
        if self._large_db is None:
            self._large_db = _connect(self._path)
        return self._large_db

    async def _writable(self) -> None:
        """Wait until no large write is being committed."""
        while self._large_write is not None:
            await asyncio.shield(self._large_write)

    def _side_changes(self, claims: Claims, releases: Sequence[str]) -> list[Change]:
        """The claims (created: none may exist) and releases (deleted if there) of a write,
        at the revisions after the newest."""
        changes: list[Change] = []
        rev = self._revision
        for key, value in claims:
            if self._live(key) is not None:
                raise Claimed(key)
            rev += 1
            changes.append((KeyValue(key, value, rev, rev, 1), False, None))
        for key in releases:
            cur = self._live(key)
            if cur is not None:
                rev += 1
                gone = KeyValue(key, cur.value, cur.create_revision, rev, cur.version)
                changes.append((gone, True, cur))
        return changes

    async def create(self, key: str, value: bytes, claims: Claims = ()) -> KeyValue:
        claims, _ = side_keys(key, claims, ())
        await self._writable()
        if self._live(key) is not None:
            raise KeyExists(key)
        changes = self._side_changes(claims, ())
        rev = self._revision + len(changes) + 1
        kv = KeyValue(key, value, rev, rev, 1)
        await self._write([*changes, (kv, False, None)])
        return kv

    async def update(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int,
        claims: Claims = (),
        releases: Sequence[str] = (),
    ) -> KeyValue:
        claims, releases = side_keys(key, claims, releases)
        await self._writable()
        cur = self._live(key)
        if cur is None:
            raise KeyNotFound(key)
        if expected_mod_revision and cur.mod_revision != expected_mod_revision:
            raise RevisionMismatch(cur)
        changes = self._side_changes(claims, releases)
        rev = self._revision + len(changes) + 1
        kv = KeyValue(key, value, cur.create_revision, rev, cur.version + 1)
        await self._write([*changes, (kv, False, cur)])
        return kv

    async def delete(
        self, key: str, expected_mod_revision: int | None = None, releases: Sequence[str] = ()
    ) -> KeyValue:
        _, releases = side_keys(key, (), releases)
        await self._writable()
        cur = self._live(key)
        if cur is None:
            raise KeyNotFound(key)
        if expected_mod_revision and cur.mod_revision != expected_mod_revision:
            raise RevisionMismatch(cur)
        changes = self._side_changes((), releases)
        rev = self._revision + len(changes) + 1
        kv = KeyValue(key, cur.value, cur.create_revision, rev, cur.version)
        await self._write([*changes, (kv, True, cur)])
        return kv

    async def watch(self, prefix: str, after_revision: int) -> SQLiteWatch:
        if after_revision < self._compacted:
            raise Compacted(after_revision, self._compacted)
        backlog: list[Event] = []
        if after_revision < self._revision:
            # up to the applied revision: a large write being committed arrives by push
            rows = self._db.execute(
                "SELECT rev, key, deleted, value, create_rev, version FROM log "
                "WHERE rev > ? AND rev <= ? AND key >= ? AND key < ? ORDER BY rev",
                (after_revision, self._revision, prefix, prefix + "\uffff"),
            )
            last: dict[str, KeyValue] = {}
            for rev, key, deleted, value, create_rev, version in rows.fetchall():
                kv = KeyValue(key, bytes(value), create_rev, rev, version)
                prev = last.get(key) or self._previous(key, rev)
                created = not deleted and version == 1
                backlog.append(Event("DELETE" if deleted else "PUT", kv, created, prev))
                last[key] = kv
        w = SQLiteWatch(self, prefix, backlog)
        self._watchers.add(w)
        return w

    def _previous(self, key: str, rev: int) -> KeyValue | None:
        row = self._db.execute(
            "SELECT rev, deleted, value, create_rev, version FROM log "
            "WHERE key = ? AND rev < ? ORDER BY rev DESC LIMIT 1",
            (key, rev),
        ).fetchone()
        if row is None or row[1]:
            return None
        return KeyValue(key, bytes(row[2]), row[3], row[0], row[4])

    async def compact(self, revision: int) -> None:
        await self._writable()
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        self._db.execute("BEGIN IMMEDIATE")
        # each key's newest write at or before the revision stays (unless it deleted the key),
        # so the state at any later revision can still be read; the newest row always stays
        self._db.execute(
            "DELETE FROM log WHERE rev <= ? AND rev < ? AND (deleted OR rev NOT IN "
            "(SELECT MAX(rev) FROM log WHERE rev <= ? GROUP BY key))",
            (revision, self._revision, revision),
        )
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('compacted', ?)", (revision,))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (self._revision,))
        self._db.execute("COMMIT")
        self._compacted = revision

    def migrate_keys(self, layout: int, rename: Callable[[str], str | None]) -> int:
        """Once per layout: give every key the name `rename` maps it to (None: unchanged).
        The history is compacted away, so watchers from before relist. Returns the keys
        renamed."""
        if self._meta("layout") >= layout:
            return 0
        renames = {k: new for b in self._buckets.values() for k in b if (new := rename(k))}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for old, new in renames.items():
                self._db.execute("UPDATE kv SET key=? WHERE key=?", (new, old))
            self._db.execute("DELETE FROM log")  # the revision itself is kept in meta
            for name, value in (
                ("compacted", self._revision),
                ("revision", self._revision),
                ("layout", layout),
            ):
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._compacted = self._revision
        moved = [self._buckets[_bucket(k)].pop(k) for k in renames]
        for kv in moved:
            new = renames[kv.key]
            self._buckets.setdefault(_bucket(new), {})[new] = KeyValue(
                new, kv.value, kv.create_revision, kv.mod_revision, kv.version
            )
        return len(renames)

    async def close(self) -> None:
        await self._writable()
        for w in list(self._watchers):
            w.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._large_db is not None:
            self._large_db.close()
        self._db.close()
