"""``python -m sbcntrctl.bench``: the same as ``sbcntrctl bench``."""

from sbcntrctl.bench.cli import main

main()
