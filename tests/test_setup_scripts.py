"""The set-up and CI plumbing: scripts/setup.sh, the Makefile and .ci/run.

These run the real scripts, but never an install: ``setup.sh --check`` only looks, and the
``.ci/run`` tests use a throw-away copy of the repo with ``HX_SKIP_SETUP=1`` (documented in
scripts/setup.sh, the Makefile and .ci/run) and a ``.venv`` link to this clone's virtualenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"
CI_RUN = REPO / ".ci" / "run"

# Variables an outer `make test` / `.ci/run` / pytest run may have set, which must not leak
# into the runs below.
_LEAKY = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "HX_PYTEST_RC_FILE",
          "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "PYTEST_PLUGINS", "HX_SKIP_SETUP")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path = REPO, timeout: float = 120, **env: str):
    return subprocess.run(cmd, cwd=cwd, env=_env(**env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", [SETUP, CI_RUN], ids=["setup.sh", "ci-run"])
def test_bash_syntax(script: Path) -> None:
    proc = _run(["bash", "-n", str(script)])
    assert proc.returncode == 0, proc.stderr


def test_ci_run_is_executable() -> None:
    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable (chmod +x .ci/run)"


def test_setup_check_passes_after_setup() -> None:
    proc = _run(["bash", str(SETUP), "--check"])
    assert proc.returncode == 0, (
        "scripts/setup.sh --check reports missing pieces; run `make setup`.\n"
        + proc.stdout + proc.stderr)
    assert "setup: all present" in proc.stdout


def test_setup_check_reports_missing_venv_without_installing(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy2(SETUP, copy / "scripts" / "setup.sh")
    shutil.copy2(REPO / "pyproject.toml", copy / "pyproject.toml")
    cache = tmp_path / "cache"
    proc = _run(["bash", str(copy / "scripts" / "setup.sh"), "--check"], cwd=copy,
                HX_CACHE_DIR=str(cache))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "setup: missing: virtualenv" in proc.stdout
    assert "setup: missing: .venv" in proc.stdout
    assert not cache.exists() and not (copy / ".venv").exists()  # --check installs nothing


def test_setup_rejects_unknown_argument() -> None:
    proc = _run(["bash", str(SETUP), "--bogus"])
    assert proc.returncode == 2
    assert "unknown argument" in proc.stderr


@pytest.mark.parametrize("target", ["setup", "demo", "test", "bench", "clean"])
def test_makefile_has_target(target: str) -> None:
    # -n: print the recipes, run nothing.
    proc = _run(["make", "-n", target], HX_SKIP_SETUP="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_makefile_unknown_target_fails() -> None:
    proc = _run(["make", "-n", "no-such-target"])
    assert proc.returncode != 0


def _repo_copy(tmp_path: Path, tests: dict[str, str]) -> Path:
    """The files `make test` needs, an own tests/ folder, .venv -> this clone's virtualenv."""
    venv = REPO / ".venv"
    if not (venv / "bin" / "python").exists():
        pytest.fail(f"{venv} is missing: run `make setup` first")
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    (copy / ".ci").mkdir()
    (copy / "tests").mkdir()
    shutil.copy2(REPO / "Makefile", copy / "Makefile")
    shutil.copy2(REPO / "pyproject.toml", copy / "pyproject.toml")
    shutil.copy2(SETUP, copy / "scripts" / "setup.sh")
    shutil.copy2(CI_RUN, copy / ".ci" / "run")
    (copy / ".venv").symlink_to(venv.resolve())
    for name, text in tests.items():
        (copy / "tests" / name).write_text(text)
    return copy


def _ci_run(copy: Path):
    # Started from outside the copy: .ci/run must cd to its repo root by itself.
    return _run([str(copy / ".ci" / "run")], cwd=copy.parent, timeout=300,
                HX_SKIP_SETUP="1", CI="true")


def test_ci_run_fails_when_no_test_runs(tmp_path: Path) -> None:
    copy = _repo_copy(tmp_path, {})
    proc = _ci_run(copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 5, out
    assert "collected no tests" in proc.stderr, out
    assert "ci: wall time" in proc.stdout, out


def test_ci_run_fails_when_a_test_fails(tmp_path: Path) -> None:
    copy = _repo_copy(tmp_path, {"test_x.py": "def test_ok():\n    pass\n\n"
                                              "def test_bad():\n    assert False\n"})
    proc = _ci_run(copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "ci: FAILED: pytest exit status 1" in proc.stderr, out


def test_ci_run_passes_when_tests_pass(tmp_path: Path) -> None:
    copy = _repo_copy(tmp_path, {"test_x.py": "def test_ok():\n    pass\n"})
    proc = _ci_run(copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ci: PASSED" in proc.stdout and "ci: wall time" in proc.stdout, out
