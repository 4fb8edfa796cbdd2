"""Build the C kernel (``csrc/``) as a cffi extension (API mode) on first use, cached on disk.

The cdef is not written by hand: it is the ``HX_CDEF_BEGIN`` … ``HX_CDEF_END`` sections of the
one public header ``csrc/include/hx/hx.h`` and the ``hx_types.h`` it includes, with
preprocessor lines other than integer ``#define`` s removed. The extension is compiled into
``$HX_CACHE_DIR/ckernel/<hash>/`` (default ``~/.cache/hx``), where the hash covers every source
and header, the flags, the arch, the Python ABI and the cffi version, so a changed source
rebuilds and an unchanged one loads in milliseconds. Builds go to a temporary directory that is
renamed into place, so concurrent first uses never see a half-written library.

Kernel sets (``HX_ARCH``): ``ref`` (portable C), ``neon`` (AArch64 NEON intrinsics) and ``x86``
(AVX2 intrinsics, x86-64). All three compute identical results. Any other name fails; there is no
silent fallback. The host default is ``neon`` on aarch64, ``x86`` on an x86-64 CPU with AVX2, else
``ref``.

Standard library + cffi only (this module runs on the boards).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import os
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

from runtime.config import cache_dir as hx_cache_dir
from runtime.package_data import packaged_dir

ARCHS = ("ref", "neon", "x86")
#: Flags a kernel set needs on top of the caller's (the ISA it is written for).
ARCH_CFLAGS = {"ref": (), "neon": (), "x86": ("-mavx2",)}
#: Flags every build uses (the C99 dialect and the kernel-set define are added per arch).
DEFAULT_CFLAGS = ("-O3",)
_STRICT_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror")

_LOADED: dict[tuple[str, str, str], ModuleType] = {}


class CKernelBuildError(RuntimeError):
    """The C kernel could not be built or loaded (one-line message)."""


def csrc_dir() -> Path:
    """``$HX_CSRC_DIR``, else the sources installed with the package (a wheel: ``runtime/_csrc/``),
    else the checkout's ``csrc/`` folder next to the ``runtime`` package."""
    env = os.environ.get("HX_CSRC_DIR")
    return Path(env).expanduser().resolve() if env else packaged_dir("csrc")


def cache_dir() -> Path:
    """``$HX_CACHE_DIR/ckernel`` (default ``~/.cache/hx/ckernel``)."""
    return hx_cache_dir("ckernel")


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx2" in line.split()
    except OSError:
        pass
    return False


def default_arch() -> str:
    """The fastest kernel set this host runs: ``neon`` (aarch64), ``x86`` (x86-64 with AVX2), else ``ref``."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "neon"
    if machine in ("x86_64", "amd64") and _cpu_has_avx2():
        return "x86"
    return "ref"


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise CKernelBuildError(f"unknown HX_ARCH {arch!r}; expected one of: {', '.join(ARCHS)}")
    return arch


def arch_define(arch: str) -> str:
    """The preprocessor define that selects a kernel set (``-DHX_ARCH_REF`` …)."""
    return f"-DHX_ARCH_{check_arch(arch).upper()}"


def source_files(arch: str = "ref", *, root: Path | None = None) -> list[Path]:
    """Library sources for a kernel set: ``common/*.c`` + ``ref/*.c`` or ``opt/<arch>/*.c``."""
    check_arch(arch)
    root = root or csrc_dir()
    kernel_dir = root / "ref" if arch == "ref" else root / "opt" / arch
    if not kernel_dir.is_dir():
        raise CKernelBuildError(f"kernel set {arch!r}: {kernel_dir} does not exist")
    files = sorted((root / "common").glob("*.c")) + sorted(kernel_dir.glob("*.c"))
    if not files:
        raise CKernelBuildError(f"no C sources under {root}")
    return files


def include_dirs(root: Path | None = None) -> list[Path]:
    root = root or csrc_dir()
    return [root / "include", root / "common"]


def compile_flags(arch: str = "ref", extra: tuple[str, ...] | list[str] = (), *, strict: bool = True) -> list[str]:
    """Flags for compiling the library sources with any gcc/clang (cross compilers included)."""
    flags = list(_STRICT_CFLAGS if strict else ("-std=c99",)) + [arch_define(arch), *ARCH_CFLAGS[arch]]
    flags += [f"-I{d}" for d in include_dirs()]
    return flags + list(extra)


_CDEF_RE = re.compile(r"/\*\s*HX_CDEF_BEGIN\s*\*/(.*?)/\*\s*HX_CDEF_END\s*\*/", re.S)
_INT_DEFINE = re.compile(r"^\s*#\s*define\s+[A-Za-z_]\w*\s+\d+u?\s*$")


def cdef_source(root: Path | None = None) -> str:
    """The cffi cdef: the marked sections of ``hx_types.h`` then ``hx.h``, preprocessor lines stripped."""
    root = root or csrc_dir()
    parts = []
    for name in ("hx_types.h", "hx.h"):
        path = root / "include" / "hx" / name
        try:
            text = path.read_text()
        except OSError as e:
            raise CKernelBuildError(f"cannot read {path}: {e}") from None
        sections = _CDEF_RE.findall(text)
        if not sections:
            raise CKernelBuildError(f"{path} has no HX_CDEF_BEGIN/HX_CDEF_END section")
        for sec in sections:
            for line in sec.splitlines():
                if line.lstrip().startswith("#"):
                    if _INT_DEFINE.match(line):
                        parts.append(re.sub(r"(\d+)u\s*$", r"\1", line.strip()))
                    continue
                parts.append(line)
    return "\n".join(parts) + "\n"


def find_compiler() -> str | None:
    """The C compiler setuptools will call: ``$CC`` if set, else cc / gcc / clang on PATH."""
    cc = os.environ.get("CC")
    if cc:
        exe = cc.split()[0]
        return cc if shutil.which(exe) else None
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _digest(arch: str, cflags: tuple[str, ...], root: Path) -> str:
    h = hashlib.sha256()
    files = source_files(arch, root=root) + sorted((root / "include").rglob("*.h")) + sorted((root / "common").glob("*.h"))
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    import cffi  # lazy: only the ckernel backend needs cffi (load() names the fix when it is missing)

    for item in (arch, *cflags, sys.version, sysconfig.get_config_var("EXT_SUFFIX") or "", cffi.__version__,
                 platform.machine()):
        h.update(b"\0" + str(item).encode())
    return h.hexdigest()[:16]


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CKernelBuildError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(arch: str | None = None, *, cflags: tuple[str, ...] | list[str] | None = None) -> ModuleType:
    """The compiled cffi module (attributes ``ffi`` and ``lib``), building it if needed."""
    arch = check_arch(arch or os.environ.get("HX_ARCH") or default_arch())
    cflags = tuple(cflags if cflags is not None else DEFAULT_CFLAGS)
    try:  # lazy: a board that runs only litert may lack cffi; this names the fix
        # lazy: cffi is needed only to build the C kernel
        import cffi
    except ImportError:
        raise CKernelBuildError("the ckernel backend needs cffi (pip install cffi)") from None
    root = csrc_dir()
    if not (root / "include" / "hx" / "hx.h").is_file():
        raise CKernelBuildError(f"C kernel sources not found under {root} (set HX_CSRC_DIR)")
    digest = _digest(arch, cflags, root)
    key = (arch, str(root), digest)
    if key in _LOADED:
        return _LOADED[key]
    modname = f"_hx_ckernel_{arch}_{digest}"
    final = cache_dir() / digest
    suffixes = importlib.machinery.EXTENSION_SUFFIXES

    def built(d: Path) -> Path | None:
        for s in suffixes:
            p = d / f"{modname}{s}"
            if p.is_file():
                return p
        return None

    lib_path = built(final) if final.is_dir() else None
    if lib_path is None:
        if find_compiler() is None:
            raise CKernelBuildError("no C compiler found (install gcc or clang, or set CC): "
                                    "the ckernel backend compiles csrc/ on first use")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=final.parent))
        try:
            ffi = cffi.FFI()
            ffi.cdef(cdef_source(root))
            ffi.set_source(modname, '#include "hx/hx.h"\n',
                           sources=[str(p) for p in source_files(arch, root=root)],
                           include_dirs=[str(d) for d in include_dirs(root)],
                           extra_compile_args=["-std=c99", arch_define(arch), *ARCH_CFLAGS[arch], *cflags])
            log = tmp / "build.log"
            try:
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                    out = ffi.compile(tmpdir=str(tmp), verbose=False)
                log.write_text(buf.getvalue())
            except Exception as e:  # distutils/setuptools raise several types
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                saved = final.parent / f"build-error-{arch}.log"
                try:
                    saved.write_text(buf.getvalue() + "\n" + str(e) + "\n")
                except OSError:
                    pass
                raise CKernelBuildError(f"building the C kernel ({arch}) failed: {msg} (log: {saved})") from None
            produced = Path(out)
            for p in tmp.iterdir():  # drop build intermediates, keep the library and the log
                if p != produced and p != log:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
            if final.is_dir() and built(final) is None:
                shutil.rmtree(final, ignore_errors=True)  # left over by an interrupted build
            try:
                os.replace(tmp, final)
            except OSError:
                if built(final) is None:  # not a concurrent winner: a real failure
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        lib_path = built(final)
        if lib_path is None:
            raise CKernelBuildError(f"the C kernel build produced no library in {final}")
    mod = _load_module(modname, lib_path)
    _LOADED[key] = mod
    return mod


__all__ = ["ARCHS", "ARCH_CFLAGS", "CKernelBuildError", "DEFAULT_CFLAGS", "arch_define", "cache_dir", "cdef_source", "check_arch",
           "compile_flags", "csrc_dir", "default_arch", "find_compiler", "include_dirs", "load", "source_files"]
