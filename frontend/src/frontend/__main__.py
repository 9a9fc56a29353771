"""``python -m frontend``: run the frontend until SIGTERM or SIGINT."""

# The tracing implementation is loaded before anything else, so that the memory
# the X-Ray SDK frees at import is reused by the modules loaded after it
# (servicekit.tracing_xray says why).
import servicekit.tracing

servicekit.tracing.preload()

# isort: split
from frontend.app import create_app  # noqa: E402 - after the tracing implementation
from frontend.settings import FrontendSettings  # noqa: E402
from servicekit.runner import serve  # noqa: E402

raise SystemExit(serve(FrontendSettings, create_app))
