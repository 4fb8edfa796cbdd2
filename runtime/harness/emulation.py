"""An emulated Raspberry Pi Python on the host: qemu-aarch64 + an arm64 Debian sysroot.

Until a board is attached, this is how the runtime is run "on the Pi": ``scripts/pi_sysroot.sh``
builds (once, cached) an arm64 sysroot with Debian bookworm's python3.11 and the aarch64 wheels
of numpy, cffi and ai-edge-litert; :class:`PiPython` runs ``python ...`` in it under
``qemu-aarch64 -cpu cortex-a72``; :func:`cross_build_ckernel` cross-compiles the C kernel's cffi
extension (``csrc/``, NEON kernels) with ``aarch64-linux-gnu-gcc`` against the sysroot's Python
headers and puts it where :mod:`runtime.backends.ckernel_build` looks for it, so
``--backend ckernel`` runs on the emulated board exactly as on a real one (where the extension
would be compiled on first use).

Host-side tooling (used by the tests and benchmarks); standard library + cffi only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cffi

from runtime.backends import ckernel_build

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "pi_sysroot.sh"


class EmulationError(RuntimeError):
    """The emulated board could not be built or run (one-line message)."""


@dataclass(frozen=True)
class PiPython:
    sysroot: Path
    site: Path
    python: Path
    qemu: str
    cpu: str = "cortex-a72"

    def command(self, *args: str) -> list[str]:
        return [self.qemu, "-cpu", self.cpu, "-L", str(self.sysroot), str(self.python), *args]

    def env(self, pythonpath: Sequence[str | os.PathLike[str]] = (), extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A clean environment: the emulated interpreter sees only the given paths and the aarch64 wheels."""
        keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER")}
        keep["PATH"] = "/usr/bin:/bin"
        keep["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in pythonpath), str(self.site)])
        keep["PYTHONNOUSERSITE"] = "1"
        keep["PYTHONDONTWRITEBYTECODE"] = "1"
        keep.update(extra or {})
        return keep

    def run(self, args: Sequence[str], *, pythonpath: Sequence[str | os.PathLike[str]] = (),
            env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=self.env(pythonpath, env), cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)


def pi_python(*, timeout: float = 1800, script: Path = SCRIPT) -> PiPython:
    """Build (or reuse) the emulated Pi Python with ``scripts/pi_sysroot.sh``."""
    if shutil.which("qemu-aarch64") is None and shutil.which("qemu-aarch64-static") is None:
        raise EmulationError("qemu-aarch64 not found (apt install qemu-user)")
    try:
        r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmulationError(f"{script} did not finish within {timeout:g} s") from None
    if r.returncode != 0:
        tail = [ln for ln in r.stderr.strip().splitlines() if ln.strip()][-3:]
        raise EmulationError(f"{script} failed: {' / '.join(tail) or 'no output'}")
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    try:
        return PiPython(sysroot=Path(env["HX_PI_SYSROOT"]), site=Path(env["HX_PI_SITE"]),
                        python=Path(env["HX_PI_PYTHON"]), qemu=env["HX_PI_QEMU"], cpu=env.get("HX_PI_CPU", "cortex-a72"))
    except KeyError as e:
        raise EmulationError(f"{script} did not print {e.args[0]}") from None


_PROBE = """
import json, sysconfig
from runtime.backends import ckernel_build as b
arch = b.default_arch()
root = b.csrc_dir()
digest = b._digest(arch, tuple(b.DEFAULT_CFLAGS), root)
print(json.dumps({"arch": arch, "digest": digest, "modname": f"_hx_ckernel_{arch}_{digest}",
                  "suffix": sysconfig.get_config_var("EXT_SUFFIX"), "cache": str(b.cache_dir()),
                  "include": sysconfig.get_paths()["include"], "platinclude": sysconfig.get_paths()["platinclude"]}))
"""


def cross_build_ckernel(pi: PiPython, package_root: str | os.PathLike[str], hx_cache_dir: str | os.PathLike[str], *,
                        cc: str = "aarch64-linux-gnu-gcc", extra_cflags: Sequence[str] = ("-mcpu=cortex-a72",),
                        timeout: float = 600) -> Path:
    """Cross-compile the C kernel extension for the emulated Python; returns the library path.

    ``package_root`` holds ``runtime/`` and ``csrc/`` as the board has them; ``hx_cache_dir`` is
    the ``HX_CACHE_DIR`` the emulated runs use. The emulated interpreter itself names the file
    (kernel set, source digest, ABI suffix: what ``ckernel_build.load`` will look for); the
    module's C code is cffi's (API mode, the cdef from the public header) and is compiled with
    the sources of that kernel set, as ``load`` would compile them on the board.
    """
    exe = shutil.which(cc)
    if exe is None:
        raise EmulationError(f"{cc} not found (apt install gcc-aarch64-linux-gnu)")
    root = Path(package_root)
    r = pi.run(["-c", _PROBE], pythonpath=[root], env={"HX_CACHE_DIR": str(hx_cache_dir)}, timeout=timeout)
    if r.returncode != 0:
        raise EmulationError(f"the emulated python could not describe the C kernel build: {r.stderr.strip().splitlines()[-1:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    final = Path(info["cache"]) / info["digest"]
    lib = final / f"{info['modname']}{info['suffix']}"
    if lib.is_file():
        return lib

    csrc = root / "csrc"
    ffi = cffi.FFI()
    ffi.cdef(ckernel_build.cdef_source(csrc))
    ffi.set_source(info["modname"], '#include "hx/hx.h"\n')
    with tempfile.TemporaryDirectory(prefix="hx-xbuild-") as tmp:
        c_file = Path(tmp) / f"{info['modname']}.c"
        ffi.emit_c_code(str(c_file))
        # The emulated interpreter's prefix is already inside the sysroot (it runs from there).
        pyinc = Path(info["include"]).name  # python3.11
        sysinc = [pi.sysroot / "usr" / "include" / pyinc, pi.sysroot / "usr" / "include" / "aarch64-linux-gnu" / pyinc]
        flags = ["-shared", "-fPIC", "-std=c99", ckernel_build.arch_define(info["arch"]), *ckernel_build.DEFAULT_CFLAGS,
                 *extra_cflags, *(f"-I{d}" for d in ckernel_build.include_dirs(csrc)),
                 *(f"-I{d}" for d in sysinc if d.is_dir()),
                 # Debian's pyconfig.h includes <aarch64-linux-gnu/python3.11/pyconfig.h>; searched
                 # after the cross compiler's own headers so the sysroot never shadows its libc.
                 "-idirafter", str(pi.sysroot / "usr" / "include")]
        srcs = [str(p) for p in ckernel_build.source_files(info["arch"], root=csrc)]
        out = Path(tmp) / lib.name
        c = subprocess.run([exe, *flags, str(c_file), *srcs, "-o", str(out)], capture_output=True, text=True,
                           timeout=timeout)
        if c.returncode != 0:
            raise EmulationError(f"cross-compiling the C kernel failed: {' / '.join(c.stderr.strip().splitlines()[-4:])}")
        final.mkdir(parents=True, exist_ok=True)
        staged = final / f".{lib.name}.{os.getpid()}.tmp"
        shutil.copy2(out, staged)
        os.replace(staged, lib)  # concurrent builders never see half a library
    return lib


__all__ = ["EmulationError", "PiPython", "cross_build_ckernel", "pi_python"]
