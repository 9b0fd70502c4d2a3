"""Stage family select: which pairs stay (dedup, near-duplicates, caps per template)."""
