"""``python -m backend``: run the backend until SIGTERM or SIGINT.

``python -m backend migrate`` and the other database commands are in
:mod:`backend.migrate`; they load neither the web application nor the X-Ray SDK.
"""

import sys

if sys.argv[1:]:
    from backend.migrate import main

    status = main(sys.argv[1:])
else:
    # The X-Ray SDK is loaded before anything else, so that the memory it frees at
    # import is reused by the modules loaded after it (servicekit.tracing says why).
    import servicekit.tracing  # noqa: F401

    # isort: split
    from backend.app import create_app
    from backend.settings import BackendSettings
    from servicekit.runner import serve

    status = serve(BackendSettings, create_app)
raise SystemExit(status)
