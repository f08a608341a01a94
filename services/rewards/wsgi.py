"""gunicorn entry point: ``gunicorn services.rewards.wsgi:app``."""

from services.rewards.app import create_app

app = create_app()
