"""Put this folder on PYTHONPATH to run a process (and the workers it starts, which inherit the
environment) as if the top-level packages named in $UNINSTALLED (comma-separated) were not
installed: every finder on ``sys.meta_path`` passes over them, so ``importlib.util.find_spec``
gives None and ``import`` raises ModuleNotFoundError, as for a package pip never installed."""
import os
import sys

HIDDEN = frozenset(filter(None, os.environ.get("UNINSTALLED", "").split(",")))


class Hiding:
    """One finder of ``sys.meta_path`` that finds nothing of ``HIDDEN``."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):  # invalidate_caches, find_distributions, ...
        return getattr(self.finder, attr)


if HIDDEN:
    sys.meta_path[:] = [Hiding(f) for f in sys.meta_path]
