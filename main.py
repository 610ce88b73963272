"""Entry points only: ``app`` for Cloud Run (gunicorn main:app)."""

from services.app import create_app

app = create_app()
