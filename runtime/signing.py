"""Signed bundles: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest already lists every bundle file with its sha256 (:mod:`runtime.bundle` checks
them), so signing the manifest signs the whole bundle. The policy (:class:`TrustPolicy`) is the
device's, never the bundle's. ``cryptography`` (the ``[runtime]`` extra) is imported only when
a signature is checked or made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "KEY_ID_HEX",
    "MAX_SIGNATURE_BYTES",
    "SIGNATURE_FORMAT",
    "SIGNATURE_NAME",
    "SignatureError",
    "SignatureInfo",
    "TrustPolicy",
    "TrustedKey",
    "key_id",
    "load_public_key",
    "load_trusted_keys",
    "policy_from_sources",
    "signature_file_bytes",
    "verify_manifest_signature",
]

SIGNATURE_NAME = "manifest.sig"
SIGNATURE_FORMAT = "hx-ed25519-v1"
KEY_ID_HEX = 16
#: A signature file is ~150 bytes; anything much larger is not one (and is not read whole).
MAX_SIGNATURE_BYTES = 4096
#: A PEM public key is ~113 bytes.
_MAX_KEY_BYTES = 16384
ENV_TRUSTED_KEYS = "HX_TRUSTED_KEYS"
ENV_REQUIRE = "HX_REQUIRE_SIGNATURE"


class SignatureError(ValueError):
    """A key or signature problem; ``str()`` is one line naming the file at fault."""


def _crypto() -> Any:
    """``cryptography``'s Ed25519 and serialization modules, or a one-line error."""
    try:
        # lazy: cryptography is needed only for signed bundles
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SignatureError("signed bundles need the 'cryptography' package "
                             "(pip install 'cryptography>=42', or the [runtime] extra)") from None
    return ed25519, serialization


def key_id(raw_public_key: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public_key).hexdigest()[:KEY_ID_HEX]


@dataclass(frozen=True)
class TrustedKey:
    """An Ed25519 public key the device trusts, and where it was read from."""

    key_id: str
    raw: bytes  # 32 bytes
    source: str  # file it came from (for messages)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's signature of ``message``."""
        ed25519, _ = _crypto()
        # lazy: cryptography is needed only for signed bundles
        from cryptography.exceptions import InvalidSignature

        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def load_public_key(path: str | os.PathLike[str]) -> TrustedKey:
    """Read a PEM Ed25519 public key (``-----BEGIN PUBLIC KEY-----``)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise SignatureError(f"{p}: is a directory, not a public key file")
        data = p.read_bytes()[: _MAX_KEY_BYTES + 1]
    except FileNotFoundError:
        raise SignatureError(f"{p}: trusted key file not found") from None
    except OSError as e:
        raise SignatureError(f"{p}: cannot read the trusted key ({e.strerror or e})") from None
    if len(data) > _MAX_KEY_BYTES:
        raise SignatureError(f"{p}: too large for a public key (over {_MAX_KEY_BYTES} bytes)")
    if b"PRIVATE KEY" in data:
        # A private key handed out as "trusted" is a key-management mistake worth stopping.
        raise SignatureError(f"{p}: is a private key; give the runtime the public key (.pub)")
    ed25519, serialization = _crypto()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        why = str(e).splitlines()[0] if str(e) else "unreadable"
        raise SignatureError(f"{p}: not a PEM public key ({why}); expected an Ed25519 '.pub' file "
                             "from toolchain keygen") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"{p}: is a {type(key).__name__.replace('_', '')} key; expected Ed25519")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return TrustedKey(key_id=key_id(raw), raw=raw, source=str(p))


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> tuple[TrustedKey, ...]:
    """Every key in ``paths`` (files, or directories meaning all ``*.pub`` in them), duplicates dropped."""
    keys: dict[str, TrustedKey] = {}
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.pub"))
            if not found:
                raise SignatureError(f"{p}: no *.pub trusted keys in this directory")
            for f in found:
                k = load_public_key(f)
                keys.setdefault(k.key_id, k)
        else:
            k = load_public_key(p)
            keys.setdefault(k.key_id, k)
    return tuple(keys.values())


@dataclass(frozen=True)
class TrustPolicy:
    """Which keys a device trusts, and whether it accepts unsigned bundles.

    A bundle that carries ``manifest.sig`` is always verified: it is refused when no trusted key
    has its key id, when the signature does not verify, or when no key was given at all (an
    unverifiable signature is not silently ignored). A bundle without one is refused when
    ``require`` is set (``--require-signature``, a board's ``runtime.require_signature = true``
    or ``HX_REQUIRE_SIGNATURE=1``) and accepted otherwise (development bundles).
    ``require_reason`` says where the requirement came from (for the refusal message).
    """

    keys: tuple[TrustedKey, ...] = ()
    require: bool = False
    require_reason: str = ""

    @classmethod
    def from_env(cls, environ: Any = None) -> "TrustPolicy":
        """``HX_TRUSTED_KEYS`` and ``HX_REQUIRE_SIGNATURE=1`` (the default of :func:`load_bundle`)."""
        env = os.environ if environ is None else environ
        raw = env.get(ENV_TRUSTED_KEYS, "")
        paths = [s for s in raw.split(os.pathsep) if s.strip()]
        try:
            keys = load_trusted_keys(paths)
        except SignatureError as e:
            raise SignatureError(f"{ENV_TRUSTED_KEYS}: {e}") from None
        req = env.get(ENV_REQUIRE, "").strip()
        if req not in ("", "0", "1"):
            raise SignatureError(f"{ENV_REQUIRE}={req!r}: expected 1 (require) or 0")
        return cls(keys=keys, require=req == "1", require_reason=f"{ENV_REQUIRE}=1" if req == "1" else "")

    def merged(self, other: "TrustPolicy") -> "TrustPolicy":
        """Keys of both; required if either requires (a policy can only be tightened)."""
        keys = {k.key_id: k for k in (*self.keys, *other.keys)}
        reasons = [r for r in (self.require_reason if self.require else "",
                               other.require_reason if other.require else "") if r]
        return TrustPolicy(keys=tuple(keys.values()), require=self.require or other.require,
                           require_reason=", ".join(reasons))

    def describe(self) -> str:
        """One line: the trusted key ids and whether a signature is required."""
        ids = ", ".join(k.key_id for k in self.keys) or "none"
        return f"trusted keys: {ids}; signature {'required' if self.require else 'optional'}"

    def key_paths(self) -> list[str]:
        """Where the keys came from (to hand the same policy to a child process)."""
        return [k.source for k in self.keys]


@dataclass(frozen=True)
class SignatureInfo:
    """A verified signature: which trusted key made it."""

    key_id: str
    key_source: str


def signature_file_bytes(key_id_hex: str, signature: bytes) -> bytes:
    """The content of ``manifest.sig`` for a 64-byte signature by key ``key_id_hex``.

    A small UTF-8 JSON object (at most :data:`MAX_SIGNATURE_BYTES`):
    ``{"format": "hx-ed25519-v1", "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}``.
    ``key_id`` (:func:`key_id`) only says which trusted key to try: a forged id gains nothing,
    the signature must still verify under that key. Keys are PEM files: the private key PKCS#8
    (``toolchain keygen``, mode 0600), the public key SubjectPublicKeyInfo (``.pub``).
    """
    if len(signature) != 64:
        raise SignatureError(f"an Ed25519 signature has 64 bytes, got {len(signature)}")
    doc = {"format": SIGNATURE_FORMAT, "key_id": key_id_hex,
           "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(doc, indent=1) + "\n").encode("ascii")


def _parse_signature_file(path: Path) -> tuple[str, bytes]:
    """(key id, 64-byte signature) from ``manifest.sig``; SignatureError when malformed."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SIGNATURE_BYTES + 1)
    except OSError as e:
        raise SignatureError(f"{path}: cannot read ({e.strerror or e})") from None
    expect = f'expected JSON {{"format": "{SIGNATURE_FORMAT}", "key_id", "signature"}}'
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{path}: malformed signature file (over {MAX_SIGNATURE_BYTES} bytes); {expect}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise SignatureError(f"{path}: malformed signature file ({why}; truncated or corrupt?); {expect}") from None
    if not isinstance(doc, dict):
        raise SignatureError(f"{path}: malformed signature file (not a JSON object); {expect}")
    if doc.get("format") != SIGNATURE_FORMAT:
        raise SignatureError(f"{path}: unknown signature format {doc.get('format')!r}; {expect}")
    kid = doc.get("key_id")
    if not (isinstance(kid, str) and len(kid) == KEY_ID_HEX and all(c in "0123456789abcdef" for c in kid)):
        raise SignatureError(f"{path}: malformed signature file (key_id {kid!r} is not {KEY_ID_HEX} "
                             "lower-case hex digits)")
    sig_b64 = doc.get("signature")
    try:
        sig = base64.b64decode(sig_b64, validate=True) if isinstance(sig_b64, str) else b""
    except (binascii.Error, ValueError):
        sig = b""
    if len(sig) != 64:
        raise SignatureError(f"{path}: malformed signature file (signature is not base64 of 64 bytes)")
    return kid, sig


def verify_manifest_signature(root: str | os.PathLike[str], manifest_bytes: bytes,
                              policy: TrustPolicy) -> SignatureInfo | None:
    """Apply ``policy`` to the bundle at ``root`` whose manifest.json holds ``manifest_bytes``.

    Returns the verified signature, or None for an unsigned bundle the policy accepts. Raises
    :class:`SignatureError` (one line, naming the file) otherwise.
    """
    root = Path(root)
    sig_path = root / SIGNATURE_NAME
    if not (sig_path.exists() or sig_path.is_symlink()):
        if policy.require:
            raise SignatureError(f"{root}: bundle is not signed ({SIGNATURE_NAME} missing) but a signature is "
                                 f"required ({policy.require_reason or 'policy'})")
        return None
    if sig_path.is_symlink() or not sig_path.is_file():
        raise SignatureError(f"{sig_path}: not a regular file")
    kid, sig = _parse_signature_file(sig_path)
    if not policy.keys:
        raise SignatureError(f"{sig_path}: the bundle is signed (key id {kid}) but no trusted key was given to "
                             f"verify it (pass --trusted-key FILE, set runtime.trusted_keys in the board file, "
                             f"or {ENV_TRUSTED_KEYS})")
    matching = [k for k in policy.keys if k.key_id == kid]
    if not matching:
        raise SignatureError(f"{sig_path}: signed by key id {kid}, which is not a trusted key "
                             f"(trusted: {', '.join(k.key_id for k in policy.keys)})")
    for k in matching:
        if k.verify(sig, manifest_bytes):
            return SignatureInfo(key_id=kid, key_source=k.source)
    raise SignatureError(f"{sig_path}: signature does not verify against manifest.json with trusted key {kid} "
                         "(the manifest was changed, or it was signed by another key)")


def policy_from_sources(key_paths: Sequence[str | os.PathLike[str]] = (), *, require: bool = False,
                        require_reason: str = "", use_env: bool = True) -> TrustPolicy:
    """A policy from explicit key paths and flag, merged with the environment's.

    Keys come from ``--trusted-key FILE|DIR`` (a directory means every ``*.pub`` in it), a
    board's ``runtime.trusted_keys`` and ``HX_TRUSTED_KEYS`` (``os.pathsep``-separated files or
    directories), so a tool that loads a bundle by path (``Engine(path)``, ``toolchain verify``)
    can be pointed at the keys without a new option.
    """
    own = TrustPolicy(keys=load_trusted_keys(key_paths), require=require, require_reason=require_reason)
    return own.merged(TrustPolicy.from_env()) if use_env else own
