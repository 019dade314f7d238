"""Where runs, steps (checkpoints) and agent definitions are kept."""
