-- W1, CRM package sync: the app's profiles, each profile's mapping to a customer of
-- the CRM database (crm_customers / crm_packages views, docs/crm-views.md), and the
-- customer's packages as crmsync last read them. Every row is upserted by its
-- natural key (profile_id, crm_package_id), so a replayed sync changes nothing.

CREATE TABLE profiles (
    id            bigserial   PRIMARY KEY,
    -- The app's own id of the profile (text: the app may use integers or UUIDs).
    profile_id    text        NOT NULL UNIQUE,
    email         text,
    -- As the app sent it, and normalised to E.164 (+14155550123) for matching;
    -- phone_e164 is NULL when the phone cannot be a phone number.
    phone         text,
    phone_e164    text,
    first_name    text,
    last_name     text,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX profiles_email ON profiles (lower(email));

-- One row per profile: matched to a CRM customer (how and when), or unmatched (why,
-- how often tried) and tried again on the next login or bulk run.
CREATE TABLE crm_mappings (
    profile_id       text        PRIMARY KEY REFERENCES profiles (profile_id),
    status           text        NOT NULL CHECK (status IN ('matched', 'unmatched')),
    crm_customer_id  text,
    method           text        CHECK (method IN ('email', 'phone', 'name')),
    matched_at       timestamptz,
    unmatched_reason text,
    -- Matching attempts so far (the successful one included); an existing match is
    -- reused without matching again, so this stops growing once matched.
    attempts         integer     NOT NULL DEFAULT 0,
    last_attempt_at  timestamptz NOT NULL,
    -- When this profile's packages were last read from the CRM (NULL: never).
    synced_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'matched') = (crm_customer_id IS NOT NULL AND method IS NOT NULL
                                   AND matched_at IS NOT NULL)),
    CHECK (status = 'matched' OR unmatched_reason IS NOT NULL)
);
-- A CRM customer's packages belong to one profile (packages are unique by CRM package
-- id), so a second profile matching an already mapped customer stays unmatched.
CREATE UNIQUE INDEX crm_mappings_customer ON crm_mappings (crm_customer_id)
    WHERE status = 'matched';
CREATE INDEX crm_mappings_unmatched ON crm_mappings (last_attempt_at)
    WHERE status = 'unmatched';

CREATE TABLE packages (
    id              bigserial     PRIMARY KEY,
    crm_package_id  text          NOT NULL UNIQUE,
    profile_id      text          NOT NULL REFERENCES profiles (profile_id),
    crm_customer_id text          NOT NULL,
    package_type    text          NOT NULL,
    name            text          NOT NULL,
    purchased_at    timestamptz,
    expires_at      timestamptz,
    -- In ``unit``s: hours may be fractional (2.5 h of bay time), uses are whole.
    -- total NULL = unlimited; remaining may go negative if the CRM lets a customer
    -- overdraw, which is worth seeing rather than hiding.
    unit            text          NOT NULL CHECK (unit IN ('hours', 'uses')),
    total           numeric(12,2),
    used            numeric(12,2) NOT NULL DEFAULT 0,
    remaining       numeric(12,2) GENERATED ALWAYS AS (total - used) STORED,
    -- The CRM's status as the view maps it (active, expired, used_up, cancelled, ...).
    status          text          NOT NULL,
    crm_updated_at  timestamptz,
    -- Set when the package is gone from the CRM (the row is kept, not deleted);
    -- cleared if it comes back.
    removed_at      timestamptz,
    -- When crmsync last changed this row from the CRM (not every read: an unchanged
    -- package is not rewritten; crm_mappings.synced_at says when it was last read).
    synced_at       timestamptz   NOT NULL,
    created_at      timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX packages_profile ON packages (profile_id) WHERE removed_at IS NULL;
