"""Build hygiene of csrc/: warning-free C99 for every kernel set and compiler at hand, no allocation,
libm or I/O in the library, the cdef comes from the public header, and an unknown arch fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from csrc_helpers import AARCH64_CC, CSRC, HOST_CC, kernel_sources, strict_flags

from runtime.backends import ckernel_build as cb

# The only external symbols the library (not the tools) may use.
ALLOWED_UNDEFINED = {"memcpy", "memset", "memcmp", "memmove", "__stack_chk_fail", "__stack_chk_guard"}

COMPILERS = [("gcc-host", "ref", HOST_CC, []), ("gcc-host-x86", "x86", HOST_CC, [])]
if shutil.which("clang"):
    COMPILERS += [("clang-host", "ref", shutil.which("clang"), []), ("clang-host-x86", "x86", shutil.which("clang"), [])]
if AARCH64_CC:
    COMPILERS += [("aarch64-ref", "ref", AARCH64_CC, ["-mcpu=cortex-a72"]),
                  ("aarch64-neon", "neon", AARCH64_CC, ["-mcpu=cortex-a72"]),
                  ("aarch64-neon-a76", "neon", AARCH64_CC, ["-mcpu=cortex-a76"])]


@pytest.mark.parametrize("name,arch,cc,extra", COMPILERS, ids=[c[0] for c in COMPILERS])
def test_library_and_tools_compile_warning_free(tmp_path, name, arch, cc, extra):
    sources = kernel_sources(arch) + [str(p) for p in sorted((CSRC / "tools").glob("*.c"))]
    for opt in ("-O0", "-O3") if name.startswith("gcc-host") else ("-O3",):
        r = subprocess.run([cc, *strict_flags(arch, [opt, *extra]), "-c", *sources], capture_output=True, text=True,
                           cwd=tmp_path)
        assert r.returncode == 0 and not r.stderr.strip(), f"{name} {opt}:\n{r.stderr}"


@pytest.mark.parametrize("arch,cc", [("ref", HOST_CC), ("x86", HOST_CC)] + ([("neon", AARCH64_CC)] if AARCH64_CC else []))
def test_library_uses_no_malloc_libm_or_io(tmp_path, arch, cc):
    nm = shutil.which("nm") if cc == HOST_CC else shutil.which("aarch64-linux-gnu-nm")
    if nm is None:
        pytest.fail("nm not installed (run scripts/setup.sh, which installs it)")
    subprocess.run([cc, *strict_flags(arch, ["-O2"]), "-c", *kernel_sources(arch)], check=True, cwd=tmp_path)
    objs = [str(tmp_path / (Path(src).stem + ".o")) for src in kernel_sources(arch)]
    out = subprocess.run([nm, "-u", *objs], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in out.splitlines() if line.strip() and not line.endswith(":")}
    hx = {s for s in undefined if s.startswith("hx_")}
    assert undefined - hx <= ALLOWED_UNDEFINED, undefined - hx - ALLOWED_UNDEFINED


def test_unknown_arch_fails_everywhere(tmp_path):
    with pytest.raises(cb.CKernelBuildError, match="unknown HX_ARCH 'avx9'"):
        cb.source_files("avx9")
    with pytest.raises(cb.CKernelBuildError, match="unknown HX_ARCH"):
        cb.load("avx9")
    src = str(CSRC / "common" / "hx_model.c")
    inc = [f"-I{CSRC / 'include'}", f"-I{CSRC / 'common'}"]
    # No arch define, or two: the preprocessor stops the build.
    for defs in ([], ["-DHX_ARCH_REF", "-DHX_ARCH_NEON"], ["-DHX_ARCH_REF", "-DHX_ARCH_X86"]):
        r = subprocess.run([HOST_CC, "-std=c99", *inc, *defs, "-c", src, "-o", str(tmp_path / "x.o")],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "HX_ARCH" in r.stderr
    # NEON kernels on a target without NEON: an error, not a fallback.
    r = subprocess.run([HOST_CC, "-std=c99", *inc, "-DHX_ARCH_NEON", "-c", str(CSRC / "opt" / "neon" / "hx_conv_s8.c"),
                        "-o", str(tmp_path / "y.o")], capture_output=True, text=True)
    assert r.returncode != 0 and "HX_ARCH=neon" in r.stderr
    # AVX2 kernels without AVX2 enabled: likewise.
    r = subprocess.run([HOST_CC, "-std=c99", *inc, "-DHX_ARCH_X86", "-mno-avx2", "-c",
                        str(CSRC / "opt" / "x86" / "hx_conv_s8.c"), "-o", str(tmp_path / "z.o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "HX_ARCH=x86" in r.stderr
    if shutil.which("make"):
        r = subprocess.run(["make", "-C", str(CSRC), "HX_ARCH=avx9", f"OUT={tmp_path}/mk"], capture_output=True,
                           text=True)
        assert r.returncode != 0 and "unknown HX_ARCH 'avx9'" in r.stderr


def test_makefile_builds(tmp_path):
    if not shutil.which("make"):
        pytest.fail("make not installed (run scripts/setup.sh, which installs it)")
    r = subprocess.run(["make", "-C", str(CSRC), "-j2", f"OUT={tmp_path}/ref", "CFLAGS=-O0"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ref" / "libhx.a").is_file() and (tmp_path / "ref" / "hx_stream").is_file()
    r = subprocess.run(["make", "-C", str(CSRC), "-j2", "HX_ARCH=x86", f"OUT={tmp_path}/x86", "CFLAGS=-O0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cdef_comes_from_the_public_header():
    cdef = cb.cdef_source()
    assert "#include" not in cdef and "#if" not in cdef
    for decl in ("hx_model_state_size", "hx_model_init", "hx_model_process", "hx_model_reset", "hx_model_get_state",
                 "hx_model_set_state", "hx_conv_s8", "typedef struct hx_model", "HX_E_CHECKSUM"):
        assert decl in cdef
    header = (CSRC / "include" / "hx" / "hx.h").read_text()
    assert "HX_CDEF_BEGIN" in header and "HX_CDEF_END" in header


def test_build_cache_is_keyed_by_sources(tmp_path, monkeypatch):
    """A copy of csrc/ with a changed source builds into a new cache entry."""
    copy = tmp_path / "csrc"
    shutil.copytree(CSRC, copy, ignore=shutil.ignore_patterns("build"))
    monkeypatch.setenv("HX_CSRC_DIR", str(copy))
    monkeypatch.setenv("HX_CACHE_DIR", str(tmp_path / "cache"))
    m1 = cb.load("ref", cflags=("-O0",))
    assert m1.ffi.string(m1.lib.hx_arch()) == b"ref"
    entries = {p.name for p in (tmp_path / "cache" / "ckernel").iterdir()}
    assert len(entries) == 1
    with open(copy / "common" / "hx_model.c", "a") as fh:
        fh.write("\n/* changed */\n")
    m2 = cb.load("ref", cflags=("-O0",))
    assert m2 is not m1
    assert len({p.name for p in (tmp_path / "cache" / "ckernel").iterdir()}) == 2
    assert cb.load("ref", cflags=("-O0",)) is m2  # loaded once per process


def test_missing_compiler_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HX_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(cb, "_LOADED", {})
    with pytest.raises(cb.CKernelBuildError) as e:
        cb.load("ref", cflags=("-O1",))
    msg = str(e.value)
    assert "no C compiler found" in msg and "\n" not in msg
