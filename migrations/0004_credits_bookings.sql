-- W3 credits write-through and W4 HubSpot batch sync: contacts (students), their
-- credit balances, mock exams, bookings and the audit log, each with what HubSpot has.

CREATE TABLE contacts (
    id                 bigserial   PRIMARY KEY,
    student_id         text        UNIQUE,
    email              text,
    hubspot_id         text        UNIQUE,
    first_name         text,
    last_name          text,
    -- Bumped on every change HubSpot should see; HubSpot has it when synced_version equals it.
    change_version     bigint      NOT NULL DEFAULT 1,
    hubspot_synced_version bigint  NOT NULL DEFAULT 0,
    hubspot_synced_at  timestamptz,
    hubspot_error      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (student_id IS NOT NULL OR email IS NOT NULL OR hubspot_id IS NOT NULL)
);
CREATE UNIQUE INDEX contacts_email ON contacts (lower(email));
CREATE INDEX contacts_hubspot_pending ON contacts (id) WHERE hubspot_synced_version < change_version;

-- One balance per contact and credit type, guarded by the app's per-contact version:
-- a notification older than the stored version for that type changes nothing.
CREATE TABLE contact_credits (
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    credit_type text        NOT NULL CHECK (credit_type IN
                            ('sj_credits', 'cs_credits', 'sjmini_credits',
                             'mock_discussion_token', 'shared_mock_credits')),
    balance     integer     NOT NULL,
    version     bigint      NOT NULL,
    reason      text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, credit_type)
);

CREATE TABLE mock_exams (
    id                 bigserial   PRIMARY KEY,
    exam_ref           text        NOT NULL UNIQUE,
    name               text,
    exam_date          date,
    total_bookings     integer     NOT NULL DEFAULT 0,
    hubspot_id         text        UNIQUE,
    change_version     bigint      NOT NULL DEFAULT 1,
    hubspot_synced_version bigint  NOT NULL DEFAULT 0,
    hubspot_synced_at  timestamptz,
    hubspot_error      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mock_exams_hubspot_pending ON mock_exams (id) WHERE hubspot_synced_version < change_version;

CREATE TABLE bookings (
    id                 bigserial   PRIMARY KEY,
    booking_ref        text        NOT NULL UNIQUE,
    contact_id         bigint      NOT NULL REFERENCES contacts (id),
    mock_exam_id       bigint      NOT NULL REFERENCES mock_exams (id),
    status             text        NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    attended           boolean,
    -- The app's per-booking version; an older event never overwrites a newer state.
    version            bigint      NOT NULL DEFAULT 0,
    occurred_at        timestamptz NOT NULL,
    hubspot_id         text        UNIQUE,
    hubspot_associated boolean     NOT NULL DEFAULT false,
    change_version     bigint      NOT NULL DEFAULT 1,
    hubspot_synced_version bigint  NOT NULL DEFAULT 0,
    hubspot_synced_at  timestamptz,
    hubspot_error      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bookings_hubspot_pending ON bookings (id)
    WHERE hubspot_synced_version < change_version OR NOT hubspot_associated;
CREATE INDEX bookings_mock_exam ON bookings (mock_exam_id) WHERE status = 'confirmed';

-- What happened, for people; an entry is marked synced once HubSpot has what it describes.
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    entity      text        NOT NULL CHECK (entity IN ('contact', 'booking', 'mock_exam')),
    entity_id   bigint      NOT NULL,
    action      text        NOT NULL,
    -- The entity's change_version this entry produced; synced when HubSpot has it.
    entity_version bigint   NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}',
    event_id    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    synced_at   timestamptz
);
CREATE INDEX audit_log_unsynced ON audit_log (entity, entity_id) WHERE synced_at IS NULL;
