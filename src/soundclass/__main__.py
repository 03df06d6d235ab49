import sys

from soundclass.cli import main

sys.exit(main())
