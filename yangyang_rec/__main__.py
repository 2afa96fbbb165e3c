"""`python -m yangyang_rec` behaves exactly like the `yangyang-rec` console script."""

import sys

from yangyang_rec.cli import main

sys.exit(main())
