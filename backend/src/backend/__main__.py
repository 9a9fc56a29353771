"""``python -m backend``: run the backend until SIGTERM or SIGINT.

``python -m backend migrate`` and the other database commands are in
:mod:`backend.migrate`; they load neither the web application nor the X-Ray SDK.
"""

import sys

if sys.argv[1:]:
    from backend.migrate import main

    status = main(sys.argv[1:])
else:
    # The tracing implementation is loaded before anything else, so that the memory
    # the X-Ray SDK frees at import is reused by the modules loaded after it
    # (servicekit.tracing_xray says why).
    import servicekit.tracing

    servicekit.tracing.preload()

    # isort: split
    from backend.app import create_app
    from backend.settings import BackendSettings
    from servicekit.runner import serve

    status = serve(BackendSettings, create_app)
raise SystemExit(status)
