"""``python -m compatlm`` is the ``compatlm`` command."""

import sys

from compatlm.cli import main

sys.exit(main())
