"""The benchmark harness: the project's services against baselines, side by side.

``sbcntrctl bench`` starts the real services and the baseline apps of
:mod:`sbcntrctl.bench.apps`, drives each with wrk pinned to another core,
interleaves the configurations over several rounds, and reports requests/s,
latency, CPU per request, memory, the ratios the performance targets name,
start-up time and SIGTERM-to-exit time.
"""
