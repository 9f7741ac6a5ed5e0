"""Training-step conformance: one forward/backward and optimizer steps in every framework on the
same weights and batch, compared pair by pair (``run``), also data parallel (``data_parallel``)."""
