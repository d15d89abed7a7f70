"""``python -m pyipsec``: the same as the ``pyipsec`` command."""

import sys

from .cli import main

sys.exit(main())
