"""What the benchmark scripts share: the repository root on ``sys.path`` and the bundle they run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def ensure_bundle(path: Path, tag: str) -> Path:
    """The bundle at ``path``, exported from the shipped default compensator when missing or invalid.

    ``tag`` prefixes the progress line and the error (the script's name, e.g. ``"soak"``).
    """
    from runtime.bundle import BundleError, load_bundle

    try:
        load_bundle(path)
        return path
    except BundleError:
        pass
    print(f"{tag}: exporting the default compensator to {path} ...", flush=True)
    r = subprocess.run([sys.executable, "-m", "toolchain", "export", "--target", "rpi", "--out", str(path), "--overwrite",
                        "--quiet"], cwd=REPO, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"{tag}: export failed (exit {r.returncode})")
    return path
