"""``python -m frontend``: run the frontend until SIGTERM or SIGINT."""

from frontend.app import create_app
from frontend.settings import FrontendSettings
from servicekit.runner import serve

raise SystemExit(serve(FrontendSettings, create_app))
