"""What every stage family shares and that needs Beam or an adapter: the dead-letter tag, counters,
the record coders, executors, the databases' catalogue, input files, result equivalence,
deterministic files, the model-stage helper. Families import it; it imports no family."""
