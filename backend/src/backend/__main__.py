"""``python -m backend``: run the backend until SIGTERM or SIGINT."""

from backend.app import create_app
from backend.settings import BackendSettings
from servicekit.runner import serve

raise SystemExit(serve(BackendSettings, create_app))
