"""The backup agent: runs the recovery plan's backup schedules on (or beside) a protected server and
reports every job with a signed status record (:mod:`drctl.agent.records`)."""
