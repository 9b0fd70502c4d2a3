"""Stage family label: a question for SQL that has none (rules or a model)."""
