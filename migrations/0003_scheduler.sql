-- The scheduler: its jobs (like pg_cron's cron.job) and the history of their runs
-- (like cron.job_run_details, but bounded: rows past the retention are pruned).

-- One row per configured job, upserted by every scheduler replica on start.
CREATE TABLE scheduler_jobs (
    job           text        PRIMARY KEY,
    cron          text        NOT NULL,
    timezone      text        NOT NULL,
    enabled       boolean     NOT NULL,
    -- Ticks before this are never considered: a new (or re-enabled) job starts with
    -- its next tick instead of replaying, or recording as missed, its past.
    enabled_since timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE job_runs (
    id              bigserial   PRIMARY KEY,
    job             text        NOT NULL,
    -- The cron tick (UTC) of a scheduled run; when a manual run was requested.
    tick            timestamptz NOT NULL,
    trigger         text        NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    -- Who asked for a manual run (the admin API's X-Triggered-By, or "admin-api").
    triggered_by    text,
    -- A manual trigger's Idempotency-Key: the same key returns the same run.
    idempotency_key text,
    params          jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'scheduled'
                    CHECK (status IN ('scheduled', 'running', 'succeeded', 'failed', 'missed')),
    -- Handler attempts (redeliveries and retries included).
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    -- Counters the handler fills in, e.g. {"expired": 12, "cancellationsQueued": 12}.
    totals          jsonb       NOT NULL DEFAULT '{}',
    -- The last error (a failed run), or why a tick was missed.
    error           text,
    CHECK (trigger = 'manual' OR triggered_by IS NULL)
);
-- Exactly once per tick: the replica whose INSERT wins emits the event. Manual runs
-- are outside this index, so they never collide with a scheduled tick.
CREATE UNIQUE INDEX job_runs_one_per_tick ON job_runs (job, tick) WHERE trigger = 'schedule';
CREATE UNIQUE INDEX job_runs_idempotency ON job_runs (job, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A job's runs, newest first (admin API, "last run").
CREATE INDEX job_runs_by_job ON job_runs (job, id DESC);
-- Pruning by age.
CREATE INDEX job_runs_age ON job_runs ((coalesce(finished_at, created_at)));
