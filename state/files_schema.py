"""The task index's SQLite schema and statements (state/files_index.py explains the design)."""

# The page cache of the database, in KiB (SQLite's negative cache_size). The rest of the file is
# in the kernel's page cache, which is not the process's memory.
CACHE_KIB = 2048

SCHEMA = f"""
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -{CACHE_KIB};
PRAGMA temp_store = FILE;
CREATE TABLE task (
    id TEXT PRIMARY KEY,
    queued REAL NOT NULL,   -- pushqtime as a POSIX timestamp
    status TEXT NOT NULL,
    stopped REAL,           -- stoptime as a POSIX timestamp, once ended
    checked REAL            -- time.monotonic() of the last read while not ended; NULL once ended
) WITHOUT ROWID;
-- Each listing is a walk along one of these, and they hold every column it needs.
CREATE INDEX task_newest ON task (queued, id, status);
CREATE INDEX task_by_status ON task (status, queued, id);
CREATE INDEX task_ended ON task (stopped) WHERE stopped IS NOT NULL;
CREATE INDEX task_live ON task (checked) WHERE checked IS NOT NULL;
-- How many tasks have each status, kept by triggers: a page's total is a lookup, not a count.
CREATE TABLE tally (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER task_added AFTER INSERT ON task BEGIN
    INSERT INTO tally VALUES (new.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_removed AFTER DELETE ON task BEGIN
    UPDATE tally SET n = n - 1 WHERE status = old.status;
END;
CREATE TRIGGER task_moved AFTER UPDATE OF status ON task WHEN old.status <> new.status BEGIN
    UPDATE tally SET n = n - 1 WHERE status = old.status;
    INSERT INTO tally VALUES (new.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
"""

INSERT = "INSERT OR IGNORE INTO task (id, queued, status, stopped, checked) VALUES (?, ?, ?, ?, ?)"
UPDATE = "UPDATE task SET queued = ?, status = ?, stopped = ?, checked = ? WHERE id = ?"
PAGE = "SELECT id, status FROM task ORDER BY queued DESC, id DESC LIMIT ? OFFSET ?"
PAGE_OF_STATUS = "SELECT id, status FROM task WHERE status = ? ORDER BY queued DESC, id DESC LIMIT ? OFFSET ?"
DUE = "SELECT id FROM task WHERE checked IS NOT NULL AND checked < ? ORDER BY checked LIMIT ?"
EXPIRED = "SELECT id FROM task WHERE stopped IS NOT NULL AND stopped < ? ORDER BY stopped LIMIT ?"
