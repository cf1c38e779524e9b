-- Outbox rows carry their own publish result: a row RabbitMQ refuses (unroutable,
-- nacked) waits until next_attempt_at (exponential backoff with jitter, computed by the
-- relay), and after CRMSYNC_OUTBOX_MAX_ATTEMPTS is parked with failed_at set and its
-- last_error, until `crmsync outbox retry` (shared.outbox.retry_failed) frees it.
-- The defaults are constants or now() (stable), so no table rewrite: existing rows
-- read next_attempt_at as the time of this migration.
ALTER TABLE outbox
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
    ADD COLUMN last_error      text,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN failed_at       timestamptz;

-- The relay's idle poll stays one index-only probe, and its claim one index range:
-- rows still to publish (neither published nor parked), by when they are due.
DROP INDEX IF EXISTS outbox_unpublished;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id)
    WHERE published_at IS NULL AND failed_at IS NULL;
-- Parked rows, for the failed-rows gauge and `crmsync outbox list`.
CREATE INDEX outbox_failed ON outbox (id) WHERE failed_at IS NOT NULL;
