"""gunicorn entry point: ``gunicorn services.activities.wsgi:app``."""

from services.activities.app import create_app

app = create_app()
