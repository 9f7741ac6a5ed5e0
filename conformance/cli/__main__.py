"""``python -m conformance.cli``: the ``inception-bridge`` command."""
import sys

from . import main

sys.exit(main())
