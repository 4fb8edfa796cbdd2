"""Verification of a bundle on the full-precision path: int8-vs-fp32 SNR, latency, HASPI,
and midbrain fidelity with ICNet / ψ-ICNet (``toolchain verify``).

Modules: :mod:`~toolchain.verify.metrics` (SNR, FEVE, KL_W, correlation; numpy only),
:mod:`~toolchain.verify.neural` (ICNet / ψ-ICNet runs, device selection; torch) and
:mod:`~toolchain.verify.report` (the JSON + HTML report and the ``toolchain verify`` entry points
:func:`add_verify_arguments` / :func:`verify_main`). Importing the package imports none of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VerifyError", "VerifyOptions", "add_verify_arguments", "run_verify", "verify_main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # lazy: report pulls torch and pyclarity; `import toolchain.verify` stays light
        from toolchain.verify import report

        return getattr(report, name)
    raise AttributeError(f"module 'toolchain.verify' has no attribute {name!r}")
