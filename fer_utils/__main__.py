"""Entry point for `python -m fer_utils`."""

import sys

from fer_utils.cli import main

if __name__ == "__main__":
    sys.exit(main())
