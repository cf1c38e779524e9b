-- W2, membership tiers: customers and orders from Shopify / Commerce7, the tiers,
-- enrolments, and every provider action with its status.

CREATE TABLE tiers (
    id                     serial      PRIMARY KEY,
    name                   text        NOT NULL UNIQUE,
    rank                   integer     NOT NULL UNIQUE CHECK (rank > 0),
    -- An order qualifies when its qualifying amount, in minor units of this
    -- currency, is at least this.
    qualifying_total_minor bigint      NOT NULL CHECK (qualifying_total_minor >= 0),
    currency               char(3)     NOT NULL,
    duration_days          integer     NOT NULL CHECK (duration_days > 0),
    shopify_tag            text        NOT NULL,
    commerce7_club_id      text        NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Example tiers; edit them freely (UPDATE tiers ...), new rows welcome.
INSERT INTO tiers (name, rank, qualifying_total_minor, currency, duration_days, shopify_tag, commerce7_club_id)
VALUES
    ('Bronze', 1, 5000,  'USD', 365, 'crmsync-tier-bronze', '6a1b8f8e-0001-4c5e-9d1e-b20a5e000001'),
    ('Silver', 2, 15000, 'USD', 365, 'crmsync-tier-silver', '6a1b8f8e-0002-4c5e-9d1e-b20a5e000002'),
    ('Gold',   3, 50000, 'USD', 365, 'crmsync-tier-gold',   '6a1b8f8e-0003-4c5e-9d1e-b20a5e000003');

CREATE TABLE customers (
    id          bigserial   PRIMARY KEY,
    provider    text        NOT NULL CHECK (provider IN ('shopify', 'commerce7')),
    -- Commerce7 customers live in a tenant; Shopify's shop domain goes here too.
    tenant      text        NOT NULL DEFAULT '',
    external_id text        NOT NULL,
    email       text,
    first_name  text,
    last_name   text,
    phone       text,
    is_member   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_id)
);
CREATE INDEX customers_email ON customers (lower(email));

CREATE TABLE orders (
    id                      bigserial   PRIMARY KEY,
    provider                text        NOT NULL,
    external_id             text        NOT NULL,
    customer_id             bigint      REFERENCES customers (id),
    order_number            text,
    financial_status        text        NOT NULL,
    currency                char(3)     NOT NULL,
    total_minor             bigint      NOT NULL,
    qualifying_total_minor  bigint      NOT NULL,
    paid                    boolean     NOT NULL,
    -- The provider's own last-change time: an older webhook never overwrites a newer one.
    source_updated_at       timestamptz,
    -- Set once the order was considered for a tier, so a replay never extends twice.
    membership_evaluated_at timestamptz,
    last_event_id           text        NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_id)
);

CREATE TABLE enrolments (
    id              bigserial   PRIMARY KEY,
    customer_id     bigint      NOT NULL REFERENCES customers (id),
    tier_id         integer     NOT NULL REFERENCES tiers (id),
    status          text        NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'upgraded', 'expired', 'cancelled')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    source_order_id bigint      REFERENCES orders (id),
    -- The provider's id for it (a Commerce7 club membership id).
    provider_ref    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- At most one active enrolment per customer.
CREATE UNIQUE INDEX enrolments_one_active ON enrolments (customer_id) WHERE status = 'active';
CREATE INDEX enrolments_expiring ON enrolments (expires_at) WHERE status = 'active';

CREATE TABLE provider_actions (
    id                    bigserial   PRIMARY KEY,
    kind                  text        NOT NULL
                          CHECK (kind IN ('add_membership', 'upgrade_membership', 'cancel_membership')),
    provider              text        NOT NULL CHECK (provider IN ('shopify', 'commerce7')),
    customer_id           bigint      NOT NULL REFERENCES customers (id),
    enrolment_id          bigint      NOT NULL REFERENCES enrolments (id),
    tier_id               integer     NOT NULL REFERENCES tiers (id),
    previous_enrolment_id bigint      REFERENCES enrolments (id),
    -- What the provider call needs that is not in the rows above (address ids, ...).
    payload               jsonb       NOT NULL DEFAULT '{}',
    status                text        NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts              integer     NOT NULL DEFAULT 0,
    max_attempts          integer     NOT NULL,
    last_error            text,
    next_retry_at         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    completed_at          timestamptz,
    -- The natural key: one action of a kind per enrolment, so replays add nothing.
    UNIQUE (enrolment_id, kind)
);
CREATE INDEX provider_actions_open ON provider_actions (status) WHERE status IN ('pending', 'processing', 'failed');
