-- The SHA-256 of each upload's content (its request as the server read it), so that a repeated
-- idempotency key is answered as a retry only when it carries the same content; another body
-- under a stored key is refused (409) and stores nothing. Uploads stored before this column
-- existed have '' and answer every repeat of their key as a retry, as they did then.
ALTER TABLE uploads ADD COLUMN body_sha256 TEXT NOT NULL DEFAULT '';
