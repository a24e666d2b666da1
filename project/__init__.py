"""Django project: settings, Celery app, URL routing and server entry points."""

from project.celery import app as celery_app

__all__ = ("celery_app",)
