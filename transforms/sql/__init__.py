"""Pure functions over SQL and question text: parsing, normalizing, safety, placeholders, hardness,
concepts, table schemas, question rules and guardrails. No Beam, no adapters."""
