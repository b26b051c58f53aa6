"""Per-client Pulumi stacks: typed settings, stack files and their secrets, offline preview and policy run."""
