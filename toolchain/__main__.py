"""``python -m toolchain`` = the ``toolchain`` command."""

import sys

from toolchain.cli import main

sys.exit(main())
