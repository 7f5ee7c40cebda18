"""Entry point of ``python -m collector``."""

import sys

from .cli import main

sys.exit(main())
