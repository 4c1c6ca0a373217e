"""`python -m router` runs the `omniroute` command."""

import sys

from router.cli import main

sys.exit(main())
