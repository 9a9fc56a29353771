"""``python -m frontend``: run the frontend until SIGTERM or SIGINT."""

# The X-Ray SDK is loaded before anything else, so that the memory it frees at
# import is reused by the modules loaded after it (servicekit.tracing says why).
import servicekit.tracing  # noqa: F401

# isort: split
from frontend.app import create_app
from frontend.settings import FrontendSettings
from servicekit.runner import serve

raise SystemExit(serve(FrontendSettings, create_app))
