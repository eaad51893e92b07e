"""The worker side: the Celery app (``celery -A workers.app worker``) and its task."""
