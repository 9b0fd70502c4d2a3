"""sqlpairs: the job's options, graph and entry point (``python -m pipeline run``)."""
