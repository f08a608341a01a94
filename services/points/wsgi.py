"""gunicorn entry point: ``gunicorn services.points.wsgi:app``."""

from services.points.app import create_app

app = create_app()
