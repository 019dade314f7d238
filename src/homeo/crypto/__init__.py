"""Encryption at rest: a hybrid post-quantum KEM (kem.py) wraps per-tenant
AES-256-GCM data keys (envelope.py); key-encryption keys live in a key file
outside the data dir (keyfile.py); tenants.py seals what a tenant marks
sensitive and rotates keys."""
