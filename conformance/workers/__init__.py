"""The worker processes' entry point: ``python -m conformance.workers PROCESS`` (started by
``conformance.launch``). One process per framework (``conformance.registry``)."""
