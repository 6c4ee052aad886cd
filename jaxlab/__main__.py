"""``python -m jaxlab`` is the ``jaxlab`` command (useful from a checkout with ``PYTHONPATH=.``)."""

import sys

from jaxlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
