"""The schedule helper, now public as :func:`jaxlab.core.after` (``jaxlab.core._schedule``).

This old private path stays for the library's own modules and tests; methods import ``jaxlab.core.after``.
"""

from jaxlab.core._schedule import after as after
from jaxlab.core._schedule import orderable as orderable
from jaxlab.core._schedule import zero_from as zero_from
