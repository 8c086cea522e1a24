"""qabot's retrieval-augmented pipeline: load, clean, chunk, index, retrieve, answer."""
