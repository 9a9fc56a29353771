"""Load-test support: the shapes' tick sequences, pass/fail thresholds, the
STEP3 audit of logs and traces, and the capacity report (STEP2, STEP4, STEP5).

The locustfiles in ``loadtest/`` use the first two; ``sbcntrctl audit`` and
``sbcntrctl capacity`` run the last two after a run.
"""
