"""``python -m harness.peak``: the same as the ``harness-peak`` command."""

import sys

from harness.peak.cli import main

# Guarded: test processes are spawned and re-import the main module under another name.
if __name__ == "__main__":
    sys.exit(main())
