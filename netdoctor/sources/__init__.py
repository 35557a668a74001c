"""Sources: where the numbers come from (live host, capture, Prometheus). I/O lives here."""
