"""The runtime is what a board installs: it imports only numpy, ai-edge-litert, cffi, sounddevice
(onnxruntime optional, matplotlib for bench plots), never torch, TensorFlow or the toolchain."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, RUNTIME_FORBIDDEN

#: Third-party modules runtime/ may import (anything else must be the standard library or runtime).
ALLOWED = {"numpy", "ai_edge_litert", "cffi", "_cffi_backend", "sounddevice", "onnxruntime", "matplotlib",
           "cryptography"}  # cryptography: Ed25519 verification of signed bundles (runtime/signing.py)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_source_imports_only_the_board_dependencies():
    stdlib = set(sys.stdlib_module_names)
    bad = {}
    for f in sorted((REPO / "runtime").rglob("*.py")):
        extra = {m for m in _imports(f) if m not in stdlib and m != "runtime" and m not in ALLOWED}
        if extra:
            bad[str(f.relative_to(REPO))] = sorted(extra)
    assert not bad, f"runtime/ imports beyond numpy, ai-edge-litert, cffi, sounddevice: {bad}"


def _runtime_imports(path: Path, package: str) -> set[str]:
    """Every ``runtime...`` module ``path`` (a module of ``package``) imports: absolute or relative,
    anywhere in the file (function bodies included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n == "runtime" or n.startswith("runtime.")}


def _harness_imports(path: Path, package: str) -> list[str]:
    return sorted(m for m in _runtime_imports(path, package) if m == "runtime.harness" or m.startswith("runtime.harness."))


def test_the_board_core_never_imports_the_harness():
    """runtime/ outside harness/ is what a board runs; the measuring harness (bench, soak, loopback,
    JACK, emulation) imports the core, never the other way round. cli.py is the top: it may."""
    core = [f for f in sorted((REPO / "runtime").rglob("*.py"))
            if "harness" not in f.relative_to(REPO / "runtime").parts and f != REPO / "runtime" / "cli.py"]
    assert {"engine.py", "bundle.py", "live.py", "ckernel.py"} <= {f.name for f in core}, core
    bad = {str(f.relative_to(REPO)): _harness_imports(f, ".".join(f.relative_to(REPO).parts[:-1])) for f in core}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"board core modules import the measuring harness: {bad}"


@pytest.mark.parametrize("text", ["import runtime.harness.bench\n", "from runtime.harness import bench\n",
                                  "from .harness.measure import stream\n", "from ..harness import soak\n",
                                  "def f():\n    from runtime.harness.soak import soak\n"])
def test_the_harness_check_sees_every_import_form(tmp_path, text):
    """The check above would catch the core importing the harness in any of these forms."""
    f = tmp_path / "probe.py"
    f.write_text(text)
    package = "runtime.backends" if text.startswith("from ..") else "runtime"
    assert _harness_imports(f, package), text
    f.write_text("from runtime.engine import Engine\nfrom . import bundle\n")
    assert _harness_imports(f, "runtime") == []


_SCRIPT = r"""
import json, sys
import runtime, runtime.engine, runtime.harness.bench, runtime.cli, runtime.audio_io, runtime.wavio, runtime.resample
import runtime.backends, runtime.bundle, runtime.boards, runtime.harness.emulation, runtime.harness.soak
from runtime.engine import Engine
bundle, wav, out = sys.argv[1:4]
for name in ("litert", "ckernel", "litert-fp32"):
    Engine(bundle, name).run(__import__("numpy").zeros(1000, "float32"))
rc = runtime.cli.main(["run", bundle, "--input", wav, "--output", out, "--backend", "ckernel"])
assert rc == 0
print(json.dumps(sorted(m for m in sys.modules)))
"""


def test_importing_runtime_and_running_a_bundle_loads_neither_torch_nor_tensorflow(default_bundle, tmp_path):
    wav = REPO / "toolchain" / "assets" / "demo_speech.wav"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(default_bundle), str(wav), str(tmp_path / "o.wav")],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    mods = json.loads(r.stdout.strip().splitlines()[-1])
    loaded = sorted({m.split(".")[0] for m in mods} & set(RUNTIME_FORBIDDEN))
    assert loaded == [], f"the runtime pulled in {loaded}"
    assert "ai_edge_litert" in {m.split(".")[0] for m in mods}
    assert (tmp_path / "o.wav").stat().st_size > 44


def test_python_dash_m_runtime_works_without_the_toolchain_on_the_path(default_bundle, tmp_path):
    """A board's tree: runtime/ + csrc/ only (no toolchain/ beside it)."""
    import shutil

    board = tmp_path / "board"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "runtime", board / "runtime", ignore=ignore)
    shutil.copytree(REPO / "csrc", board / "csrc", ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wav = REPO / "toolchain" / "assets" / "demo_speech.wav"
    r = subprocess.run([sys.executable, "-m", "runtime", "run", str(default_bundle), "--input", str(wav), "--output",
                        str(tmp_path / "o.wav")], capture_output=True, text=True, timeout=300, env=env, cwd=board)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "through litert" in r.stdout
    r = subprocess.run([sys.executable, "-m", "runtime", "--help"], capture_output=True, text=True, timeout=60, env=env, cwd=board)
    assert r.returncode == 0 and all(c in r.stdout for c in ("run", "stream", "bench"))
