"""``python -m runner`` is the same CLI as ``kling-batch``."""

import sys

from runner.cli.commands import main

sys.exit(main())
