"""``python -m vlkge.cli``: the command line, as ``python -m vlkge``."""

import sys

from vlkge.cli import main

sys.exit(main())
