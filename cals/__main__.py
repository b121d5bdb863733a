"""`python -m cals` (also `torchrun ... -m cals train ...`): the `cals` command."""
import sys

from cals.cli import main

sys.exit(main())
