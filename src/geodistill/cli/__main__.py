"""``python -m geodistill.cli`` (and ``torchrun ... -m geodistill.cli``): the ``geodistill`` command."""

import sys

from geodistill.cli import main

sys.exit(main())
