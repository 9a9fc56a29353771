"""``sbcntrctl drill ENV NAME``: run one of infra/drills.yml's FIS experiments and
report what the services did, from CloudWatch."""
