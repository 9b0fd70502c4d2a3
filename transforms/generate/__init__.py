"""Stage family generate: new pairs from the schema and from validated pairs (personas,
teachings, synthesis, evolution, consistency)."""
