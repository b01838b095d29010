"""What the server tells operators: JSON log lines and Prometheus metrics."""
