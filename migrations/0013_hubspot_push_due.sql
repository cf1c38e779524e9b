-- Real-time HubSpot pushes of credit changes without an outbox row per change (issue 11).
-- hubspot_push_due_at is the push's state on the contact row itself:
--   NULL      no real-time push wanted (the batch sync still sends what is pending);
--   <= now()  a push is due: a credit writer set it in the transaction of the change;
--   > now()   a pusher holds the contact until then (its lease), or a failed call
--             waits until then to be retried.
-- A sender claims due contacts with FOR UPDATE SKIP LOCKED and moves the time forward
-- (the lease), so one replica at a time sends a contact, and a change that lands
-- while it is on the wire is due again when the lease is given back.
ALTER TABLE contacts ADD COLUMN hubspot_push_due_at timestamptz;
CREATE INDEX contacts_hubspot_push_due ON contacts (hubspot_push_due_at)
    WHERE hubspot_push_due_at IS NOT NULL;
