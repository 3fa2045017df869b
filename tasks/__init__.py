"""Thin Celery tasks, one module per queue family. Business logic lives in ``core``."""
