"""Service level objectives: their definitions (a YAML file), their current
values from the store and this process's request latencies, and the Prometheus
rules and Grafana dashboard generated from the same definitions."""
