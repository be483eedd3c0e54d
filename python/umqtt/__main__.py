"""``python -m umqtt``: the command line (see umqtt.cli)."""

import sys

from .cli import main

sys.exit(main())
