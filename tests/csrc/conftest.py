"""Session fixtures of the C-kernel tests: the int8 and 16x8 test models (built once, cached on disk) and
the host cffi build of the kernel."""

from __future__ import annotations

import pytest
from csrc_helpers import SeanetCase, host_archs, load_test_model, load_test_model16


@pytest.fixture(scope="session")
def seanet() -> SeanetCase:
    """Random-weight SEANet int8 step graph, its blob and ≥ 10 s of int8 speech + noise."""
    return load_test_model()


@pytest.fixture(scope="session")
def seanet16() -> SeanetCase:
    """Random-weight prescription-config SEANet as a finalized 16x8 step graph, its blob and ≥ 10 s of
    int16 speech + noise (then saturation)."""
    return load_test_model16()


@pytest.fixture(scope="session")
def cklib():
    """The host build (HX_ARCH=ref) of csrc/ through cffi: ``.ffi`` and ``.lib``."""
    from runtime.backends.ckernel_build import load

    return load("ref")


@pytest.fixture(scope="session", params=host_archs())
def cklib_arch(request):
    """Each kernel set the host runs (ref, and x86 on an AVX2 CPU), through cffi."""
    from runtime.backends.ckernel_build import load

    return load(request.param)


@pytest.fixture(scope="session")
def tools_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hx-tools")
