-- Access roles for the compstream history database on a ClickHouse SERVER.
-- Run once as an administrator (clickhouse-client --multiquery < sql/auditor_role.sql).
-- The embedded chdb engine has no access control; this file does not apply there.
-- tests/history/test_docs_sql.py parses every statement with EXPLAIN AST.

-- Auditors: read everything in `compstream`, change nothing. No INSERT, no
-- ALTER (so no UPDATE/DELETE mutations), no OPTIMIZE, no DROP.
CREATE ROLE IF NOT EXISTS compstream_auditor;
GRANT SELECT ON compstream.* TO compstream_auditor;

-- The worker: append only. INSERT on the history tables, and SELECT on
-- schema_migrations so it can refuse to start against an unmigrated schema.
-- Deliberately no ALTER: the process that writes postings cannot rewrite them.
CREATE ROLE IF NOT EXISTS compstream_writer;
GRANT INSERT ON compstream.events TO compstream_writer;
GRANT INSERT ON compstream.postings TO compstream_writer;
GRANT INSERT ON compstream.dead_letters TO compstream_writer;
GRANT INSERT ON compstream.leaderboard_windows TO compstream_writer;
GRANT INSERT ON compstream.digests TO compstream_writer;
GRANT SELECT ON compstream.schema_migrations TO compstream_writer;

-- Migrations (`HistoryStore.migrate()`) run as a separate, short-lived
-- identity: DDL that only creates, plus the bookkeeping table.
CREATE ROLE IF NOT EXISTS compstream_migrator;
GRANT CREATE DATABASE ON compstream.*, CREATE TABLE ON compstream.* TO compstream_migrator;
GRANT SELECT, INSERT ON compstream.schema_migrations TO compstream_migrator;

-- Example users (set real passwords; keep them out of version control):
-- CREATE USER IF NOT EXISTS auditor_jane IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE compstream_auditor;
-- GRANT compstream_auditor TO auditor_jane;
-- CREATE USER IF NOT EXISTS compstream_worker IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE compstream_writer;
-- GRANT compstream_writer TO compstream_worker;
