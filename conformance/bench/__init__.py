"""``inception-bridge bench``: our implementations against the peers, in one run (a benchmark, never a test)."""
