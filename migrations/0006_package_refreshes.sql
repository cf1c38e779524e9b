-- W1 refresh on demand: each request, so a caller answered 202 can follow it.
CREATE TABLE package_refreshes (
    request_id   text        PRIMARY KEY,
    profile_id   text        NOT NULL,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed')),
    -- The answer the caller gets: the profile's packages and how it was matched.
    result       jsonb,
    error        text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX package_refreshes_age ON package_refreshes (requested_at);
