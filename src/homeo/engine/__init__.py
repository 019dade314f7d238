"""The durable agent engine: graphs of steps, checkpointed one by one."""
