"""WSGI entry: `gunicorn app:app` (settings from KAGIYA_* variables and KAGIYA_CONFIG)."""

from kagiya.web import create_app

app = create_app()
