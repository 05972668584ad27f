"""`python -m d365ri`."""

import sys

from d365ri.cli import main

sys.exit(main())
