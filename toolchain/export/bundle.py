"""Write a bundle directory atomically: all files, then manifest.json, then one rename.

A reader (a board copying bundles over, a test, a second export) never sees a half-written
bundle: everything is written into a temporary sibling directory on the same filesystem,
signed when a signing key is given (``manifest.sig``, see :mod:`runtime.signing`), checked
with the runtime's own :func:`runtime.bundle.load_bundle` (the signature against the key's
public half), and only then renamed into place. On any failure the temporary directory is removed and an existing bundle at
the destination is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

import toolchain
from runtime.bundle import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    BundleError,
    check_member_name,
    load_bundle,
    manifest_digest,
    manifest_from_dict,
)
from runtime.signing import SIGNATURE_NAME, TrustPolicy

if TYPE_CHECKING:
    from toolchain.export.signing import SigningKey

__all__ = ["BundleError", "write_bundle", "toolchain_version"]

FileData = Union[bytes, bytearray, memoryview, "os.PathLike[str]"]

_CHUNK = 1 << 20
# Fields write_bundle owns; a caller passing them would be overridden silently otherwise.
_RESERVED = ("files", "manifest_sha256")


def toolchain_version() -> str:
    """``toolchain.__version__``, else the installed distribution's version, else "0.1.0"."""
    try:
        v = getattr(toolchain, "__version__", None)
        if isinstance(v, str) and v:
            return v
    except Exception:  # a broken package __init__ must not stop an export
        pass
    try:
        return version("hx-toolchain")
    except (ImportError, PackageNotFoundError):
        return "0.1.0"


def _plain(obj: Any) -> Any:
    """Round-trip through JSON so tuples become lists and numpy scalars become numbers."""

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):  # numpy scalars and arrays, without importing numpy
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")

    try:
        return json.loads(json.dumps(obj, default=default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise BundleError(f"{MANIFEST_NAME}: manifest fields are not JSON-serialisable ({e})") \
            from None


def _write_member(tmp: Path, name: str, data: FileData) -> str:
    """Write one member below ``tmp`` and return its sha256 (hashed while writing)."""
    dest = tmp / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        if isinstance(data, (bytes, bytearray, memoryview)):
            h.update(data)
            out.write(data)
        else:
            with open(data, "rb") as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())  # on an SD card, rename-before-data-hits-disk is a real risk
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not supported everywhere (e.g. some network filesystems); best effort
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_inputs(manifest_fields: Mapping[str, Any],
                  files: Mapping[str, FileData]) -> None:
    for key in _RESERVED:
        if key in manifest_fields:
            raise BundleError(f"{MANIFEST_NAME}: {key!r} is filled in by write_bundle; "
                              "do not pass it in manifest_fields")
    fv = manifest_fields.get("format_version", FORMAT_VERSION)
    if fv != FORMAT_VERSION:
        raise BundleError(f"{MANIFEST_NAME}: format_version {fv!r} cannot be written by this "
                          f"toolchain (writes {FORMAT_VERSION})")
    if not files:
        raise BundleError("a bundle needs at least one file besides manifest.json")
    for name, data in files.items():
        try:
            check_member_name(name)
        except ValueError as e:
            raise BundleError(f"{name}: {e}") from None
        if isinstance(data, str):
            # A str could be content or a path: make the caller say which.
            raise BundleError(f"{name}: pass bytes or a pathlib.Path, not str")
        if not isinstance(data, (bytes, bytearray, memoryview, os.PathLike)):
            raise BundleError(f"{name}: expected bytes or a path, got {type(data).__name__}")
        if isinstance(data, os.PathLike) and not Path(data).is_file():
            raise BundleError(f"{os.fspath(data)}: source for bundle file {name!r} "
                              "is not a readable file")
    # "a/b" and "a" cannot both exist (one would have to be a file and a directory).
    names = set(files)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in names:
                raise BundleError(f"{prefix}: listed as a file but {name!r} needs it "
                                  "to be a directory")


def _looks_replaceable(path: Path) -> bool:
    """Only an old bundle (or an empty directory) may be replaced by ``overwrite=True``.

    This keeps ``--out ~ --overwrite`` from deleting a home directory.
    """
    if not path.is_dir() or path.is_symlink():
        return False
    return (path / MANIFEST_NAME).is_file() or not any(path.iterdir())


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out``; with overwrite, move an old bundle aside first."""
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
        return
    if not overwrite:
        raise BundleError(f"{out}: already exists (pass overwrite=True to replace it)")
    if not _looks_replaceable(out):
        raise BundleError(f"{out}: exists and is not a bundle directory; refusing to "
                          "replace it")
    old = out.parent / f".hx-old-{secrets.token_hex(4)}"  # short: a 255-byte bundle name must still work
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)  # put the previous bundle back before reporting
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_bundle(out_dir: str | os.PathLike[str], manifest_fields: Mapping[str, Any],
                 files: Mapping[str, FileData], *, overwrite: bool = False,
                 signing_key: "SigningKey | None" = None) -> Path:
    """Write a bundle to ``out_dir`` atomically and return its path.

    ``manifest_fields``: everything in the manifest except ``files`` (hashes are computed
    here); ``format_version``, ``created_utc`` and ``toolchain_version`` are filled in when
    absent. ``files``: bundle member name (``"model_int8.tflite"``, ``"kernel/model.hxb"``)
    → bytes, or a Path to copy. The result is checked with the runtime's ``load_bundle``
    before it is moved into place. With ``signing_key`` (:func:`toolchain.export.signing.load_signing_key`)
    ``manifest.sig`` is written over the final manifest bytes and verified by that check.
    Raises BundleError with a one-line message.
    """
    out = Path(out_dir)
    fields = _plain(dict(manifest_fields))
    _check_inputs(fields, files)

    fields["format_version"] = FORMAT_VERSION
    fields.setdefault("created_utc",
                      datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    fields.setdefault("toolchain_version", toolchain_version())
    # Check the manifest before touching the disk, with hashes as placeholders, so schema
    # mistakes are reported against the real destination and cost no I/O.
    manifest_from_dict({**fields, "files": {n: "0" * 64 for n in files}},
                       source=str(out / MANIFEST_NAME))

    # Fail early on an obvious clash; _swap_into_place checks again at the end.
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise BundleError(f"{out}: already exists (pass overwrite=True to replace it)")
        if not _looks_replaceable(out):
            raise BundleError(f"{out}: exists and is not a bundle directory; refusing to "
                              "replace it")

    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".hx-bundle-", dir=parent))  # short: see _swap_into_place
        # mkdtemp makes it 0700; the audio service on a board may run as another user.
        os.chmod(tmp, 0o755)
    except OSError as e:
        why = ("not a directory" if parent.exists() and not parent.is_dir()
               else e.strerror or type(e).__name__)
        raise BundleError(f"{parent}: cannot create the bundle here ({why})") from None

    try:
        hashes = {name: _write_member(tmp, name, data) for name, data in files.items()}
        fields["files"] = hashes
        manifest = manifest_from_dict(fields, source=str(out / MANIFEST_NAME)).to_dict()
        manifest["manifest_sha256"] = manifest_digest(manifest)
        # Manifest last: a directory with a manifest.json is, by construction, complete.
        manifest_bytes = (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode()
        _write_member(tmp, MANIFEST_NAME, manifest_bytes)
        if signing_key is not None:
            _write_member(tmp, SIGNATURE_NAME, signing_key.sign_manifest(manifest_bytes))
        _fsync_dir(tmp)
        # The check trusts exactly the signing key (and requires its signature), whatever the
        # environment says: the bundle must be loadable by a device that trusts that key.
        policy = (TrustPolicy(keys=(signing_key.public,), require=True, require_reason="signed export")
                  if signing_key is not None else TrustPolicy())
        try:
            load_bundle(tmp, trust=policy)
        except BundleError as e:
            # Report against the destination, not the temporary name the user never sees.
            raise BundleError(str(e).replace(str(tmp), str(out))) from None
        _swap_into_place(tmp, out, overwrite)
        _fsync_dir(parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            where = str(e.filename or tmp).replace(str(tmp), str(out))
            raise BundleError(f"{where}: cannot write bundle "
                              f"({e.strerror or type(e).__name__})") from None
        raise
    return out
