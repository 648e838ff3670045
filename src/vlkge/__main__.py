"""``python -m vlkge``: the command line."""

import sys

from vlkge.cli import main

sys.exit(main())
