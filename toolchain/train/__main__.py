"""``python -m toolchain.train --recipe NAME``: the same as ``toolchain train`` (torchrun launches this)."""

import sys

from toolchain.train.cli import main

sys.exit(main())
