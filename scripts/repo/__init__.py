"""Encrypted, deduplicated backup repository of disk images (format: docs/repository-format.md)."""
