"""The durable job queue: leases, heartbeats, retries, dead letters."""
