"""memscribe's domain and stores. Imports no Celery: every function takes its clients."""
