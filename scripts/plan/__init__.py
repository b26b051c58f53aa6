"""Recovery plans: the model, loading against the JSON Schema (package data) and the semantic rules."""
