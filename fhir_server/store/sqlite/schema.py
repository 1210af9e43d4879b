"""SQLite schema of the embedded store (see docs/architecture.md for the design)."""

from __future__ import annotations

SCHEMA_VERSION = 2
OPEN_END = 9223372036854775807  # "valid until further notice" sequence number / time

DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS resources (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    created_seq INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resources_type ON resources (type, rid);

CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    until_seq INTEGER NOT NULL DEFAULT {OPEN_END},
    until_time INTEGER NOT NULL DEFAULT {OPEN_END},
    method TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_rid ON versions (rid, version);
CREATE INDEX IF NOT EXISTS versions_type ON versions (type, seq);
CREATE INDEX IF NOT EXISTS versions_until ON versions (until_seq) WHERE until_seq < {OPEN_END};

-- Index rows: one clustered (WITHOUT ROWID) table per value type, keyed for lookups by value, plus
-- an index by resource row for closing rows when a new version supersedes them. A row is valid for
-- sequence numbers lo_seq <= s < hi_seq. Text columns use '' rather than NULL (key columns).
CREATE TABLE IF NOT EXISTS ix_string (
    pid INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, norm, rid, exact, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_string_r ON ix_string (rid, hi_seq, pid);

CREATE TABLE IF NOT EXISTS ix_token (
    pid INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, code, rid, system, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_token_r ON ix_token (rid, hi_seq, pid);

CREATE TABLE IF NOT EXISTS ix_reference (
    pid INTEGER NOT NULL, ref_type TEXT NOT NULL, ref_id TEXT NOT NULL,
    ref_version TEXT NOT NULL, url TEXT NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, ref_id, ref_type, url, ref_version, rid, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_reference_u ON ix_reference (pid, url) WHERE url != '';
CREATE INDEX IF NOT EXISTS ix_reference_r ON ix_reference (rid, hi_seq, pid);

CREATE TABLE IF NOT EXISTS ix_date (
    pid INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, lo, rid, hi, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_date_hi ON ix_date (pid, hi, rid);
CREATE INDEX IF NOT EXISTS ix_date_r ON ix_date (rid, hi_seq, pid);

CREATE TABLE IF NOT EXISTS ix_number (
    pid INTEGER NOT NULL, value REAL NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, value, rid, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_number_r ON ix_number (rid, hi_seq, pid);

CREATE TABLE IF NOT EXISTS ix_quantity (
    pid INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, value REAL NOT NULL,
    rid INTEGER NOT NULL, grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, code, value, rid, system, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_quantity_r ON ix_quantity (rid, hi_seq, pid);

CREATE TABLE IF NOT EXISTS ix_uri (
    pid INTEGER NOT NULL, uri TEXT NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, uri, rid, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_uri_r ON ix_uri (rid, hi_seq, pid);

-- Positions (near): latitude/longitude bound the scan, the unit vector (x, y, z) gives the
-- exact distance without trigonometry (search/geo.py).
CREATE TABLE IF NOT EXISTS ix_geo (
    pid INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL, x REAL NOT NULL,
    y REAL NOT NULL, z REAL NOT NULL, rid INTEGER NOT NULL,
    grp INTEGER NOT NULL, lo_seq INTEGER NOT NULL, hi_seq INTEGER NOT NULL,
    PRIMARY KEY (pid, lat, lon, rid, grp, lo_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_geo_r ON ix_geo (rid, hi_seq, pid);

-- Free text (_content, _text): one row per version (rowid = its sequence number), holding the
-- folded and stemmed terms the search layer computed (search/text.py); validity comes from the
-- version row. detail=column: no positions (no phrase queries), column filters work.
CREATE VIRTUAL TABLE IF NOT EXISTS ix_text USING fts5(
    content, narrative, tokenize = 'unicode61 remove_diacritics 0', detail = column,
    columnsize = 0
);
"""
TEXT_COLUMNS = {"_content": "content", "_text": "narrative"}

INDEX_TABLES = {
    "strings": ("ix_string", ("norm", "exact")),
    "tokens": ("ix_token", ("system", "code")),
    "references": ("ix_reference", ("ref_type", "ref_id", "ref_version", "url")),
    "dates": ("ix_date", ("lo", "hi")),
    "numbers": ("ix_number", ("value",)),
    "quantities": ("ix_quantity", ("system", "code", "value")),
    "uris": ("ix_uri", ("uri",)),
    "geo": ("ix_geo", ("lat", "lon", "x", "y", "z")),
}
