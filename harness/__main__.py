"""``python -m harness``: the same as the ``harness`` command."""

from harness.cli import main

# Guarded: test processes are spawned and re-import the main module under another name.
if __name__ == "__main__":
    main()
