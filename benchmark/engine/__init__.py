"""Training loop, evaluation and the run that ties them together."""
