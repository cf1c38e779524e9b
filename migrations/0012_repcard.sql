-- W5, RepCard pull: seven entities keyed by RepCard's own id, in the seed's order
-- (users, offices, customers, appointments, status logs, customer attachments,
-- appointment attachments), each with the columns analysts query plus the full
-- raw_data as RepCard sent it.
--
-- A child keeps its parent's RepCard id in <parent>_repcard_id (always set) and the
-- foreign key <parent>_id (NULL while the parent is not in Postgres yet). The pull
-- links such children once the parent arrives (services/syncer/repcard/store.py), so
-- a child that comes before its parent is kept, never lost.
-- Upserts compare raw_data: an unchanged record is not rewritten.

CREATE TABLE repcard_users (
    id                bigint      PRIMARY KEY,
    first_name        text,
    last_name         text,
    email             text,
    phone             text,
    role              text,
    job_title         text,
    status            text,
    office_name       text,
    -- Offices come after users in the seed's order: linked by the pull's link step.
    office_repcard_id bigint,
    office_id         bigint,
    created_at        timestamptz,
    updated_at        timestamptz,
    raw_data          jsonb       NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repcard_users_email ON repcard_users (lower(email));

CREATE TABLE repcard_offices (
    id         bigint      PRIMARY KEY,
    name       text,
    address    text,
    city       text,
    state      text,
    created_at timestamptz,
    updated_at timestamptz,
    raw_data   jsonb       NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE repcard_users ADD CONSTRAINT repcard_users_office_fk
    FOREIGN KEY (office_id) REFERENCES repcard_offices (id);

CREATE TABLE repcard_customers (
    id                bigint      PRIMARY KEY,
    first_name        text,
    last_name         text,
    email             text,
    phone             text,
    address           text,
    city              text,
    state             text,
    zip               text,
    status            text,
    owner_repcard_id  bigint,
    owner_id          bigint      REFERENCES repcard_users (id),
    office_repcard_id bigint,
    office_id         bigint      REFERENCES repcard_offices (id),
    created_at        timestamptz,
    updated_at        timestamptz,
    raw_data          jsonb       NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repcard_customers_updated ON repcard_customers (updated_at);

CREATE TABLE repcard_appointments (
    id                  bigint      PRIMARY KEY,
    customer_repcard_id bigint,
    customer_id         bigint      REFERENCES repcard_customers (id),
    setter_repcard_id   bigint,
    setter_id           bigint      REFERENCES repcard_users (id),
    closer_repcard_id   bigint,
    closer_id           bigint      REFERENCES repcard_users (id),
    title               text,
    status              text,
    disposition         text,
    scheduled_at        timestamptz,
    ends_at             timestamptz,
    created_at          timestamptz,
    updated_at          timestamptz,
    raw_data            jsonb       NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repcard_appointments_scheduled ON repcard_appointments (scheduled_at);

CREATE TABLE repcard_status_logs (
    id                  bigint      PRIMARY KEY,
    customer_repcard_id bigint,
    customer_id         bigint      REFERENCES repcard_customers (id),
    user_repcard_id     bigint,
    user_id             bigint      REFERENCES repcard_users (id),
    status_id           bigint,
    status              text,
    previous_status     text,
    created_at          timestamptz,
    updated_at          timestamptz,
    raw_data            jsonb       NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repcard_status_logs_customer ON repcard_status_logs (customer_repcard_id);

CREATE TABLE repcard_customer_attachments (
    id                  bigint      PRIMARY KEY,
    customer_repcard_id bigint,
    customer_id         bigint      REFERENCES repcard_customers (id),
    file_name           text,
    file_type           text,
    file_url            text,
    created_at          timestamptz,
    updated_at          timestamptz,
    raw_data            jsonb       NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repcard_appointment_attachments (
    id                     bigint      PRIMARY KEY,
    appointment_repcard_id bigint,
    appointment_id         bigint      REFERENCES repcard_appointments (id),
    file_name              text,
    file_type              text,
    file_url               text,
    created_at             timestamptz,
    updated_at             timestamptz,
    raw_data               jsonb       NOT NULL,
    synced_at              timestamptz NOT NULL DEFAULT now()
);

-- Children still waiting for their parent: the link step reads only these.
CREATE INDEX repcard_users_unlinked ON repcard_users (office_repcard_id)
    WHERE office_id IS NULL AND office_repcard_id IS NOT NULL;
CREATE INDEX repcard_customers_unlinked ON repcard_customers (id)
    WHERE (owner_id IS NULL AND owner_repcard_id IS NOT NULL)
       OR (office_id IS NULL AND office_repcard_id IS NOT NULL);
CREATE INDEX repcard_appointments_unlinked ON repcard_appointments (id)
    WHERE (customer_id IS NULL AND customer_repcard_id IS NOT NULL)
       OR (setter_id IS NULL AND setter_repcard_id IS NOT NULL)
       OR (closer_id IS NULL AND closer_repcard_id IS NOT NULL);
CREATE INDEX repcard_status_logs_unlinked ON repcard_status_logs (id)
    WHERE (customer_id IS NULL AND customer_repcard_id IS NOT NULL)
       OR (user_id IS NULL AND user_repcard_id IS NOT NULL);
CREATE INDEX repcard_customer_attachments_unlinked ON repcard_customer_attachments (id)
    WHERE customer_id IS NULL AND customer_repcard_id IS NOT NULL;
CREATE INDEX repcard_appointment_attachments_unlinked ON repcard_appointment_attachments (id)
    WHERE appointment_id IS NULL AND appointment_repcard_id IS NOT NULL;

-- One row per entity per run, with the seed's column names (so its queries work),
-- plus the run id and the pull's own bookkeeping (window, chunks, pages, unlinked).
CREATE TABLE repcard_sync_log (
    id               bigserial   PRIMARY KEY,
    run_id           bigint      NOT NULL,
    entity_type      text        NOT NULL,
    sync_type        text        NOT NULL CHECK (sync_type IN ('full', 'incremental', 'range')),
    -- pending (waiting for its turn), running, succeeded, failed, skipped (a skip flag).
    status           text        NOT NULL
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    started_at       timestamptz,
    completed_at     timestamptz,
    records_fetched  integer     NOT NULL DEFAULT 0,
    records_inserted integer     NOT NULL DEFAULT 0,
    records_updated  integer     NOT NULL DEFAULT 0,
    records_failed   integer     NOT NULL DEFAULT 0,
    -- Fetched and identical to what Postgres had: not rewritten.
    records_unchanged integer    NOT NULL DEFAULT 0,
    -- Rows of this entity still without one of their parents when the run ended.
    records_unlinked integer     NOT NULL DEFAULT 0,
    error_message    text,
    -- The date window sent as from_date / to_date (NULL: everything).
    from_date        date,
    to_date          date,
    requests         integer     NOT NULL DEFAULT 0,
    pages_failed     integer     NOT NULL DEFAULT 0,
    chunks           integer     NOT NULL DEFAULT 0,
    chunks_done      integer     NOT NULL DEFAULT 0,
    -- Highest updated_at seen by this entity's run (becomes the cursor on success).
    max_updated_at   timestamptz,
    UNIQUE (run_id, entity_type)
);
CREATE INDEX repcard_sync_log_entity ON repcard_sync_log (entity_type, started_at DESC);

-- Per-entity cursor, moved only when the entity's pull succeeded: the next
-- incremental run asks from window_end (inclusive: RepCard filters by whole days).
CREATE TABLE repcard_sync_cursors (
    entity_type    text        PRIMARY KEY,
    window_end     date        NOT NULL,
    max_updated_at timestamptz,
    run_id         bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
