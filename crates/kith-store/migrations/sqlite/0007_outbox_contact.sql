-- The contact a delivery is about (a rule firing's contact, the subject of a Segment track
-- call), so that erasing a contact erases its queued and sent deliveries, whose payloads hold
-- its email and traits. Digests, about many contacts at once, have none.
ALTER TABLE outbox ADD COLUMN contact_id INTEGER;
UPDATE outbox SET contact_id = (SELECT contact_id FROM rule_firings WHERE rule_firings.id = outbox.firing_id)
 WHERE firing_id IS NOT NULL;
CREATE INDEX outbox_contact ON outbox (contact_id) WHERE contact_id IS NOT NULL;
