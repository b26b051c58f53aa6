"""Onboarding a client: the plan skeleton and the stack file (``drctl client new``)."""
