"""``python -m pop3proto.adapters.cli``: the ``pop3proto`` command."""

import sys

from . import main

sys.exit(main())
