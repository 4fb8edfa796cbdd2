"""Build hook: the wheel carries the C kernel sources and the board files inside the runtime package.

``pip install '.[runtime]'`` on a board must give a runtime that builds the C kernel (cffi, on
first use) and knows the boards without the checkout, so the build copies the top-level
``csrc/`` (what the kernel build reads: headers, common/, ref/ and opt/<arch>/) and ``boards/``
into ``runtime/_csrc/`` and ``runtime/_boards/`` (runtime/package_data.py finds them there).
Everything else about the distribution is in pyproject.toml; MANIFEST.in puts the same files
into the sdist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: Top-level folder -> (its folder inside runtime/, the files of it that ship).
SHIPPED = {
    "csrc": ("_csrc", ("include/**/*.h", "common/*.c", "common/*.h", "ref/*.c", "opt/*/*.c", "opt/*/*.h")),
    "boards": ("_boards", ("*.toml",)),
}


class BuildPyWithRuntimeData(build_py):
    """``build_py`` that also copies :data:`SHIPPED` into the built ``runtime`` package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads csrc/ and boards/ from the checkout itself
            return
        for folder, (dest, patterns) in SHIPPED.items():
            src = HERE / folder
            files = sorted({f for p in patterns for f in src.glob(p) if f.is_file()})
            if not files:  # never build a runtime that cannot find its kernels or boards
                raise SystemExit(f"setup.py: no files under {src} match {patterns}")
            out = Path(self.build_lib) / "runtime" / dest
            shutil.rmtree(out, ignore_errors=True)  # a reused build/ must not ship files since removed
            for f in files:
                target = out / f.relative_to(src)
                self.mkpath(str(target.parent))
                self.copy_file(str(f), str(target))


setup(cmdclass={"build_py": BuildPyWithRuntimeData})
