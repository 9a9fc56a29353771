"""Shared runtime of the sbcntr services.

Everything both services need once: settings (:mod:`servicekit.settings`),
JSON logging (:mod:`servicekit.logs`), the one middleware around every
request (:mod:`servicekit.middleware`: tracing, the access log, browser
security, errors, the body limit), what a request says about its client
(:mod:`servicekit.asgi`), tracing with the X-Ray SDK or OpenTelemetry
(:mod:`servicekit.tracing`), liveness, readiness and drain
(:mod:`servicekit.health`), the application conventions (:mod:`servicekit.app`)
and the uvicorn runner (:mod:`servicekit.runner`).
"""
