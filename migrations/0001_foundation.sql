-- Plumbing every service shares: idempotent consumption and the transactional outbox.

-- One row per (consumer, event id) whose effects are committed; written in the
-- same transaction as the handler's own writes.
CREATE TABLE processed_messages (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_messages_processed_at ON processed_messages (processed_at);

-- Events written in a business transaction, published to RabbitMQ by the relay.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    event_id     text        NOT NULL UNIQUE,
    routing_key  text        NOT NULL,
    headers      jsonb       NOT NULL,
    body         bytea       NOT NULL,
    content_type text        NOT NULL DEFAULT 'application/json',
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Wake the relay at commit instead of waiting for its next poll.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
