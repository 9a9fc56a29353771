"""``python -m backend``: run the backend until SIGTERM or SIGINT."""

# The X-Ray SDK is loaded before anything else, so that the memory it frees at
# import is reused by the modules loaded after it (servicekit.tracing says why).
import servicekit.tracing  # noqa: F401

# isort: split
from backend.app import create_app
from backend.settings import BackendSettings
from servicekit.runner import serve

raise SystemExit(serve(BackendSettings, create_app))
