"""Library shared by every Lvbao service: config, database, auth, errors, outbox, idempotency, clock."""
