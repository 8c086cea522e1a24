"""qabot's edges: the command line and the Discord bot, both thin layers over `rag`."""
