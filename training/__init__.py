"""Training programs for the models qabot ships (kept beside the `rag` package, never imported by it)."""
