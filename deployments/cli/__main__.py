"""``python -m deployments.cli``: the same as ``pbe``."""

import sys

from deployments.cli.app import main

sys.exit(main())
