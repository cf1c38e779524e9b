-- Providers converge to Postgres (issue 8 item 1) and orders that are cancelled or
-- refunded (item 8).
--
-- A provider action no longer replays an edge ("add", "remove"): it makes the
-- provider's state for the customer equal to the customer's active enrolment now.
-- Actions of one customer are serialised by a lease row with an owner and an expiry;
-- a crashed holder's lease is taken over only once it has expired.

CREATE TABLE provider_leases (
    customer_id bigint      PRIMARY KEY REFERENCES customers (id),
    -- Who holds it: "<host>:<pid>:<claim id>", unique per claim.
    owner       text        NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Bumped in the same transaction as every change of the customer's enrolments; an
-- action remembers the version it was queued at, so a reconcile that made the provider
-- equal to version V completes every open action of that customer with version <= V.
ALTER TABLE customers ADD COLUMN membership_version bigint NOT NULL DEFAULT 0;
ALTER TABLE provider_actions ADD COLUMN membership_version bigint NOT NULL DEFAULT 0;
-- The lease owner of the attempt in progress (or of the last one), for operators.
ALTER TABLE provider_actions ADD COLUMN claimed_by text;
ALTER TABLE provider_actions DROP CONSTRAINT provider_actions_kind_check;
ALTER TABLE provider_actions ADD CONSTRAINT provider_actions_kind_check CHECK (
    kind IN ('add_membership', 'upgrade_membership', 'downgrade_membership', 'cancel_membership'));
CREATE INDEX provider_actions_customer_open ON provider_actions (customer_id)
    WHERE status IN ('pending', 'processing');

-- An enrolment whose order was cancelled or refunded below the tier's amount.
ALTER TABLE enrolments DROP CONSTRAINT enrolments_status_check;
ALTER TABLE enrolments ADD CONSTRAINT enrolments_status_check CHECK (
    status IN ('active', 'upgraded', 'expired', 'cancelled', 'revoked'));

-- What a Commerce7 club membership needs from the order (address and card ids).
ALTER TABLE orders ADD COLUMN provider_context jsonb NOT NULL DEFAULT '{}';
-- A Commerce7 refund order names the order it refunds (previousOrderId) and how much
-- of the qualifying amount it gives back, in minor units.
ALTER TABLE orders ADD COLUMN refund_of text;
ALTER TABLE orders ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0);
CREATE INDEX orders_refund_of ON orders (provider, refund_of) WHERE refund_of IS NOT NULL;
CREATE INDEX orders_customer ON orders (customer_id);

-- An order's qualifying amount now, net of the refund orders that name it, in minor
-- units (a Shopify order's own amount is already net of its refunds).
CREATE FUNCTION order_net_qualifying_minor(o orders) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(0, o.qualifying_total_minor - COALESCE((
        SELECT sum(r.refunded_minor) FROM orders r
        WHERE r.provider = o.provider AND r.refund_of = o.external_id), 0))::bigint
$$;
