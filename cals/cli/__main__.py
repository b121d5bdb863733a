"""`python -m cals.cli`, the same as the `cals` command."""
import sys

from cals.cli import main

sys.exit(main())
