"""``drctl export``: a client's data at contract end, as standard files (disk images, plan,
settings, signed reports) that need nothing of drctl to be used."""
