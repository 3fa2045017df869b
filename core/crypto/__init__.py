"""Data keys per subject (AES-GCM), wrapped by the key-encryption key: crypto-shredding
(docs/erasure.md)."""
