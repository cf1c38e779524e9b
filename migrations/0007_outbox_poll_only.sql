-- The outbox relay polls (CRMSYNC_OUTBOX_POLL_S, 50 ms) instead of being woken by
-- NOTIFY: Postgres serialises the commits of transactions that NOTIFY (they take one
-- database-wide lock until commit), which capped every handler writing to the outbox
-- at one commit per WAL flush, about 450 a second on the development machine.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
