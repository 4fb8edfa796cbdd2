"""The layering in docs/ARCHITECTURE.md, checked on the source: imports run one way and never loop.

Stages, bottom to top: ``runtime`` (what a board runs; imports nothing of ours) <
``toolchain.audio`` < ``toolchain.fitting`` < ``toolchain.models`` < ``toolchain.train`` <
``toolchain.export`` < ``toolchain.verify`` < ``toolchain.fleet`` < ``toolchain.cli``. A module may
import its own stage or lower ones. Inside runtime, the board core never imports the measuring
harness (``runtime.harness``), which only ``runtime.cli`` sits above. Every import counts, also
those inside functions: a lazy import hides a dependency, it does not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

#: Stage order, bottom first. A package not listed here is a test failure (place it deliberately).
STAGES = ["runtime", "toolchain.audio", "toolchain.fitting", "toolchain.models", "toolchain.train",
          "toolchain.export", "toolchain.verify", "toolchain.fleet", "toolchain.cli"]
#: Modules of the ``toolchain`` package itself that sit outside the stages (version, entry point).
TOP = {"toolchain", "toolchain.__main__"}
#: runtime's own layers: core < harness < cli (``python -m runtime`` is the top of the board side).
RUNTIME_LAYERS = ["runtime", "runtime.harness", "runtime.cli", "runtime.__main__"]


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in ("toolchain", "runtime"):
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _imports(mod: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module of ours, line) for every import in ``path``, wherever it sits."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from pkg import mod`` depends on pkg.mod when that is a module, else on pkg.
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        for t in targets:
            # The longest known module that ``t`` names or lies inside.
            parts = t.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts:
                out.append((".".join(parts), node.lineno))
    return out


def _stage(mod: str) -> str | None:
    if mod.split(".")[0] == "runtime":
        return "runtime"
    return next((s for s in sorted(STAGES, key=len, reverse=True) if mod == s or mod.startswith(s + ".")), None)


def _runtime_layer(mod: str) -> int:
    return max(i for i, s in enumerate(RUNTIME_LAYERS) if mod == s or mod.startswith(s + "."))


def _graph(root: Path) -> dict[str, dict[str, int]]:
    mods = _modules(root)
    known = set(mods)
    return {m: {t: line for t, line in _imports(m, p, known) if t != m} for m, p in mods.items()}


def _violations(root: Path) -> list[str]:
    bad = []
    for mod, deps in sorted(_graph(root).items()):
        if mod in TOP:
            continue
        s = _stage(mod)
        if s is None:
            bad.append(f"{mod}: in no stage (add it to STAGES in tests/test_architecture.py deliberately)")
            continue
        for dep, line in sorted(deps.items()):
            if dep in TOP and dep != "toolchain":
                bad.append(f"{mod}:{line} imports the entry point {dep}")
                continue
            if dep == "toolchain":
                continue  # the package itself: its version string
            d = _stage(dep)
            if d is None:
                continue
            if STAGES.index(d) > STAGES.index(s):
                bad.append(f"{mod}:{line} imports {dep} ({d} sits above {s})")
            elif s == d == "runtime" and _runtime_layer(dep) > _runtime_layer(mod):
                bad.append(f"{mod}:{line} imports {dep} (the board core never imports the harness or the CLI)")
    return bad


def _cycles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    g = _graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_imports_run_one_way_through_the_stages():
    bad = _violations(REPO)
    assert not bad, "imports against the stage order (docs/ARCHITECTURE.md):\n  " + "\n  ".join(bad)


def test_no_import_cycle_between_modules():
    cycles = _cycles(REPO)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


_BASE = {"toolchain/__init__.py": "", "runtime/__init__.py": "", "runtime/engine.py": "",
         "toolchain/audio/__init__.py": "", "toolchain/audio/levels.py": "",
         "toolchain/train/__init__.py": "", "toolchain/train/loop.py": "",
         "toolchain/export/__init__.py": "", "toolchain/export/bundle.py": ""}


@pytest.mark.parametrize("rel, text, expect", [
    ("toolchain/train/qat.py", "def f():\n    from toolchain.export import bundle\n", "toolchain.export.bundle"),
    ("runtime/bench.py", "import toolchain.audio.levels\n", "toolchain.audio.levels"),
    ("toolchain/audio/io.py", "from ..train.loop import x\n", "toolchain.train.loop"),
])
def test_the_direction_check_catches_an_upward_import(tmp_path, rel, text, expect):
    _write_tree(tmp_path, {**_BASE, rel: text})
    bad = _violations(tmp_path)
    assert len(bad) == 1 and expect in bad[0], bad


def test_the_direction_check_allows_downward_imports_and_catches_a_cycle(tmp_path):
    _write_tree(tmp_path, {**_BASE, "toolchain/export/pipeline.py": "from toolchain.train import loop\nimport runtime.engine\n"})
    assert _violations(tmp_path) == []
    assert _cycles(tmp_path) == []
    _write_tree(tmp_path, {"toolchain/export/a.py": "from toolchain.export import b\n",
                           "toolchain/export/b.py": "def f():\n    from . import a\n"})
    assert _cycles(tmp_path) == [["toolchain.export.a", "toolchain.export.b"]]


def _unexplained_lazy_imports(root: Path) -> list[str]:
    """In-function imports with no ``lazy`` comment on their line or the comment block above their group."""
    bad = []
    for mod, path in _modules(root).items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        top = {id(n) for n in tree.body}
        for t in tree.body:
            if isinstance(t, (ast.If, ast.Try)):  # optional-dependency guards at module level
                top |= {id(c) for c in ast.walk(t)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            text = " ".join(lines[node.lineno - 1:node.end_lineno])
            k = node.lineno - 2
            while k >= 0 and lines[k].strip().startswith(("#", "from ", "import ")):
                text += " " + lines[k]
                k -= 1
            if k >= 0 and "#" in lines[k]:  # e.g. ``try:  # lazy: ...`` opening the guarded import
                text += " " + lines[k][lines[k].index("#"):]
            if "lazy" not in text.lower():
                bad.append(f"{path.relative_to(root)}:{node.lineno}")
    return bad


def test_imports_sit_at_the_top_unless_a_comment_says_why_they_are_lazy():
    """A lazy import is kept only for a heavy optional dependency, and a ``# lazy: ...`` comment names it."""
    bad = _unexplained_lazy_imports(REPO)
    assert not bad, f"{len(bad)} imports inside functions without a '# lazy: <why>' comment: " + ", ".join(bad)


def test_the_lazy_import_check_reads_the_comment_above_a_group(tmp_path):
    _write_tree(tmp_path, {**_BASE, "toolchain/audio/io.py": (
        "def f():\n    # lazy: torch is heavy\n    import torch\n    import torch.nn\n\n"
        "def g():\n    import json\n")})
    assert _unexplained_lazy_imports(tmp_path) == ["toolchain/audio/io.py:7"]
