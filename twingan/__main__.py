"""`python -m twingan translate ...` and `python -m twingan push ...`: see `twingan.cli`."""

import sys

from twingan.cli import main

if __name__ == "__main__":
    sys.exit(main())
