"""`homeo batch run`: many inputs of one agent as homeo runs, here or on Ray.

drive.py submits a slice of lines and works the queue until their runs end;
on_ray.py spreads slices over a Ray cluster, each slice a retried Ray task.
The lines, their idempotency keys and result rows are engine/batch.py's.
"""
