"""``python -m jaxlab`` is the ``jaxlab`` command (useful from a checkout with ``PYTHONPATH=.``)."""

import sys

from jaxlab.cli import main

sys.exit(main())
