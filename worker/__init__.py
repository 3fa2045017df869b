"""The Celery app, its process wiring, and the ``memscribe`` command line."""
