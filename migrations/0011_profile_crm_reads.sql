-- W1 syncs read the CRM with no connection to crmsync's database held, then write in a
-- short transaction. Two syncs of one profile may then read the CRM at the same time;
-- each takes a ticket from this sequence just before its CRM read, and the write keeps
-- the data of the read that started last: a sync whose ticket is older than the
-- profile's crm_read_ticket writes nothing (a newer read has already landed).
CREATE SEQUENCE crm_read_tickets;
ALTER TABLE profiles ADD COLUMN crm_read_ticket bigint NOT NULL DEFAULT 0;
