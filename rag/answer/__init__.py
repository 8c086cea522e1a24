"""Answerers: the offline extractive one and LLM-backed ones, chosen by name in `registry`."""
