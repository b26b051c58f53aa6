"""``drctl status``: protection status across clients (RPO, jobs, tests, drift), metrics."""
