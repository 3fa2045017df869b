"""Observability: Prometheus metrics (multiprocess-safe under prefork), health and the exporter.

- ``multiproc``: point prometheus-client at ``MEMSCRIBE_METRICS_DIR`` before any sample is made.
- ``metrics``: the counters and histograms worker processes write (``worker_metrics()``).
- ``collector``: what is read live from Redis at scrape time (backlog, lag, dead letters...).
- ``health``: ``check_health``, behind ``memscribe health`` and ``/readyz``.
- ``server``: ``memscribe metrics``, one HTTP exporter per host (``/metrics``, ``/livez``,
  ``/readyz``).
"""
