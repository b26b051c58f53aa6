"""drctl: the operator CLI of Flexible Recovery (plans, stacks, encrypted backups, activation)."""
