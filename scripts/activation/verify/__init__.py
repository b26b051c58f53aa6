"""Verification of a restored server: the plan's checks run with testinfra (:mod:`.checks`), also as a
subprocess inside a sandbox namespace (``python -m drctl.activation.verify``)."""
