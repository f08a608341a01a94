"""A mock of WeChat's servers for development and tests; see ``app.py``."""

from .app import create_app

__all__ = ["create_app"]
