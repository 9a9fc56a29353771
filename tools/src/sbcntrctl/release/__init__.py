"""``sbcntrctl release``: the steps of the release pipeline, one tested command each."""
