"""PostgreSQL log backups (WAL archiving into the encrypted repository) and point-in-time restore."""
