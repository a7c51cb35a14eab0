//! Celery message protocol
