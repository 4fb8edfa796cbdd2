"""What a board does: ``pip install '.[runtime]'`` (not editable) into a fresh virtualenv, then
``python -m runtime run BUNDLE --backend ckernel ...`` from a directory outside the checkout, with
no HX_* variable and no PYTHONPATH. The C sources and board files must come with the package
(setup.py copies them into runtime/_csrc and runtime/_boards), the cffi build must compile from
that copy, and the output must be the in-repo run's, sample for sample.

The install goes through pip as a user's would (build isolation, the registry or its cache;
``/opt/wheels`` as extra find-links where it exists, as scripts/setup.sh does). It takes about
30 s on the 2-core development VM (venv 4 s, pip 25 s, first C kernel build 4 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import run_file
from runtime.wavio import read_wav
from tests.conftest import REPO, RUNTIME_FORBIDDEN

pytestmark = pytest.mark.slow

DEMO = REPO / "toolchain" / "assets" / "demo_speech.wav"
#: What a fresh clone does not have (.gitignore's build outputs, caches and the virtualenv).
_NOT_IN_A_CLONE = shutil.ignore_patterns(".git", ".venv", "out", "demo_out", "build", "*.egg-info", "__pycache__",
                                         "*.pyc", "*.so", "*.o", ".hypothesis", ".pytest_cache", ".whl", ".gl")

_PROBE = r"""
import json, sys
import runtime, runtime.cli
from runtime.backends import ckernel_build
from runtime.boards import boards_dir, list_boards
rc = runtime.cli.main(["run", sys.argv[1], "--backend", "ckernel", "--input", "in.wav", "--output", "probe.wav"])
print(json.dumps({"rc": rc, "runtime": runtime.__file__, "csrc": str(ckernel_build.csrc_dir()),
                  "boards_dir": str(boards_dir()), "boards": [b.name for b in list_boards()],
                  "modules": sorted(sys.modules)}))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that points Python or the runtime at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("HX_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with ``<clone>[runtime]`` installed by pip; returns its python and the timings."""
    root = tmp_path_factory.mktemp("install")
    clone = root / "clone"
    shutil.copytree(REPO, clone, ignore=_NOT_IN_A_CLONE, symlinks=True)
    venv = root / "venv"
    base = getattr(sys, "_base_executable", None) or sys.executable  # the interpreter, not our venv's
    t0 = time.perf_counter()
    r = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert r.returncode == 0, r.stderr[-2000:]
    t_venv = time.perf_counter() - t0
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off"]
    if Path("/opt/wheels").is_dir():  # the machine's wheel cache, as scripts/setup.sh uses it
        pip += ["--find-links", "/opt/wheels"]
    t0 = time.perf_counter()
    r = subprocess.run([*pip, f"{clone}[runtime]"], capture_output=True, text=True, timeout=1200,
                       env=_clean_env(), cwd=root)
    t_pip = time.perf_counter() - t0
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    print(f"fresh venv {t_venv:.1f} s, pip install '.[runtime]' {t_pip:.1f} s")
    return {"python": py, "venv": venv, "clone": clone, "venv_s": t_venv, "pip_s": t_pip}


def test_pip_installed_runtime_runs_a_bundle_on_the_c_kernel_outside_the_checkout(installed, default_bundle,
                                                                                     tmp_path):
    work = tmp_path / "board"
    work.mkdir()
    shutil.copyfile(DEMO, work / "in.wav")
    # A fresh HOME: no C kernel built earlier in ~/.cache/hx, so this run compiles the installed sources.
    env = _clean_env(HOME=str(tmp_path / "home"))
    t0 = time.perf_counter()
    r = subprocess.run([str(installed["python"]), "-m", "runtime", "run", str(default_bundle), "--backend", "ckernel",
                        "--input", "in.wav", "--output", "out.wav"], capture_output=True, text=True, timeout=600,
                       env=env, cwd=work)
    t_run = time.perf_counter() - t0
    print(f"first run (C kernel built from the installed sources) {t_run:.1f} s")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert "through ckernel" in r.stdout
    assert list((tmp_path / "home" / ".cache" / "hx" / "ckernel").glob("*/_hx_ckernel_*")), "no C kernel was built"

    y, sr = read_wav(work / "out.wav")
    assert len(y) > 0 and np.isfinite(y).all() and np.abs(y).max() > 0.01
    ref = run_file(str(default_bundle), str(work / "in.wav"), str(tmp_path / "repo.wav"), backend="ckernel")
    y_repo, sr_repo = read_wav(tmp_path / "repo.wav")
    assert sr == sr_repo == ref.sample_rate
    assert np.array_equal(y, y_repo), f"max difference {np.abs(y - y_repo).max()}"

    # Where everything came from, and what the run loaded (in one process).
    p = subprocess.run([str(installed["python"]), "-c", _PROBE, str(default_bundle)], capture_output=True, text=True,
                       timeout=600, env=env, cwd=work)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads(p.stdout.strip().splitlines()[-1])
    assert info["rc"] == 0
    venv = installed["venv"].resolve()
    for key in ("runtime", "csrc", "boards_dir"):
        assert Path(info[key]).resolve().is_relative_to(venv), (key, info[key])
    assert Path(info["csrc"]).name == "_csrc" and Path(info["boards_dir"]).name == "_boards"
    assert info["boards"] == sorted(f.stem for f in (REPO / "boards").glob("*.toml"))
    loaded = sorted({m.split(".")[0] for m in info["modules"]} & set(RUNTIME_FORBIDDEN))
    assert loaded == [], f"the installed runtime pulled in {loaded}"
    assert np.array_equal(read_wav(work / "probe.wav")[0], y)
