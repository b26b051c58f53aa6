"""``python -m drctl.activation.verify``: run a server's plan checks (see :func:`.checks.main`)."""

import sys

from drctl.activation.verify.checks import main

sys.exit(main())
