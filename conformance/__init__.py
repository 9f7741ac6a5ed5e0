"""Conformance: every implementation of a model, each in its own worker process, compared."""
