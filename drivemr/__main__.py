"""`python -m drivemr` runs the command line, for when the `drivemr` script is not on PATH."""

import sys

from drivemr.cli import main

sys.exit(main())
