"""``python -m soundclass``.

The guard matters: pool workers start from a fork server that imports the
main module under another name (see :mod:`soundclass.util.executors`).
"""

import sys

from soundclass.cli import main

if __name__ == "__main__":
    sys.exit(main())
