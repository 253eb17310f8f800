"""The web process: ``gunicorn -k gthread wsgi:app``."""

from app import create_app

app = create_app()
