"""The signing half of signed bundles: Ed25519 key pairs and ``manifest.sig`` (format: runtime/signing.py).

``toolchain keygen --out DIR`` makes a key pair with :func:`generate_keypair`; ``toolchain export
--sign KEY`` loads the private key with :func:`load_signing_key` before any work and
:func:`toolchain.export.bundle.write_bundle` signs the manifest inside the temporary directory,
so the bundle appears at its destination already signed (and verified with the key's public half).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.atomic import atomic_write
from runtime.bundle import MANIFEST_NAME, BundleError, load_bundle
from runtime.signing import (
    SIGNATURE_NAME,
    SignatureError,
    TrustedKey,
    TrustPolicy,
    _crypto,
    key_id,
    signature_file_bytes,
)

__all__ = ["KeyPair", "SigningKey", "generate_keypair", "load_signing_key"]

#: Default file stem of ``toolchain keygen``: DIR/hx-signing.key and DIR/hx-signing.pub.
DEFAULT_KEY_NAME = "hx-signing"
_MAX_KEY_BYTES = 16384


@dataclass(frozen=True)
class SigningKey:
    """A loaded Ed25519 private key, with its public half as the runtime would trust it."""

    private: object  # cryptography's Ed25519PrivateKey
    public: TrustedKey
    source: str

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign_manifest(self, manifest_bytes: bytes) -> bytes:
        """The content of ``manifest.sig`` for these exact manifest.json bytes."""
        return signature_file_bytes(self.key_id, self.private.sign(manifest_bytes))  # type: ignore[attr-defined]


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """Read an unencrypted PEM (PKCS#8) Ed25519 private key; one-line SignatureError otherwise."""
    p = Path(path)
    try:
        if p.is_dir():
            raise SignatureError(f"{p}: is a directory, not a private key file")
        data = p.read_bytes()[: _MAX_KEY_BYTES + 1]
    except FileNotFoundError:
        raise SignatureError(f"{p}: signing key not found (make one with: toolchain keygen --out DIR)") from None
    except OSError as e:
        raise SignatureError(f"{p}: cannot read the signing key ({e.strerror or e})") from None
    if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
        raise SignatureError(f"{p}: is a public key; --sign needs the private key (the .key file from toolchain keygen)")
    ed25519, serialization = _crypto()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SignatureError(f"{p}: the private key is encrypted; toolchain keygen writes unencrypted keys "
                             "(protect them by file mode and storage instead)") from None
    except ValueError as e:
        why = str(e).splitlines()[0] if str(e) else "unreadable"
        raise SignatureError(f"{p}: not a PEM private key ({why}); expected the Ed25519 '.key' file "
                             "from toolchain keygen") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{p}: is a {type(key).__name__.replace('_', '')} key; expected Ed25519")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SigningKey(private=key, public=TrustedKey(key_id=key_id(raw), raw=raw, source=f"{p} (public half)"),
                      source=str(p))


@dataclass(frozen=True)
class KeyPair:
    """What :func:`generate_keypair` wrote."""

    private_path: Path
    public_path: Path
    key_id: str


def generate_keypair(out_dir: str | os.PathLike[str], *, name: str = DEFAULT_KEY_NAME,
                     overwrite: bool = False) -> KeyPair:
    """Write ``out_dir/NAME.key`` (PEM PKCS#8, mode 0600) and ``out_dir/NAME.pub`` (PEM SPKI).

    Both files are written atomically; an existing one is never replaced without
    ``overwrite``, and if the second write fails the first is removed, so a key pair is never
    left half-made. ``out_dir`` is created (mode 0700) when missing.
    """
    d = Path(out_dir)
    if not name or "/" in name or name.startswith("."):
        raise SignatureError(f"key name {name!r} must be a plain file stem (no '/', not hidden)")
    key_path, pub_path = d / f"{name}.key", d / f"{name}.pub"
    if not overwrite:
        for p in (key_path, pub_path):
            if p.exists() or p.is_symlink():
                raise SignatureError(f"{p}: already exists (pass --overwrite to replace the key pair)")
    if d.exists() and not d.is_dir():
        raise SignatureError(f"{d}: exists and is not a directory")
    ed25519, serialization = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = key.public_key()
    pem_pub = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Both files are complete on disk before either is renamed into place (inner exits first);
        # only a failing rename of the .pub could separate them, and then the new .key goes too.
        renamed_key = False
        try:
            with atomic_write(pub_path, "wb") as fp:
                fp.write(pem_pub)
                with atomic_write(key_path, "wb", perm=0o600) as fk:
                    fk.write(pem_key)
                renamed_key = True
        except BaseException:
            if renamed_key:
                key_path.unlink(missing_ok=True)
            raise
    except OSError as e:
        where = e.filename or d
        raise SignatureError(f"{where}: cannot write the key pair ({e.strerror or type(e).__name__})") from None
    return KeyPair(private_path=key_path, public_path=pub_path, key_id=key_id(raw))


def sign_bundle(path: str | os.PathLike[str], key: SigningKey) -> str:
    """Sign an existing, unsigned bundle in place (``toolchain sign``); returns the key id.

    The bundle is checked first (hashes, format, schema: an unchecked bundle must not get a
    signature), the exact manifest bytes that were checked are signed, ``manifest.sig`` is
    written atomically, and the result is loaded again requiring that key's signature. A bundle
    that is already signed is refused: re-signing is a deliberate act (remove manifest.sig).
    """

    root = Path(path)
    sig = root / SIGNATURE_NAME
    if sig.exists() or sig.is_symlink():
        raise SignatureError(f"{sig}: the bundle is already signed; remove {SIGNATURE_NAME} first to re-sign it")
    try:
        manifest_bytes = (root / MANIFEST_NAME).read_bytes()
    except OSError:
        manifest_bytes = b""  # load_bundle below names the problem
    load_bundle(root, trust=TrustPolicy())
    if (root / MANIFEST_NAME).read_bytes() != manifest_bytes:
        raise BundleError(f"{root / MANIFEST_NAME}: changed while being signed; try again")
    try:
        with atomic_write(sig, "wb") as fh:
            fh.write(key.sign_manifest(manifest_bytes))
    except OSError as e:
        raise SignatureError(f"{sig}: cannot write ({e.strerror or type(e).__name__})") from None
    try:
        load_bundle(root, trust=TrustPolicy(keys=(key.public,), require=True, require_reason="toolchain sign"))
    except BundleError:
        sig.unlink(missing_ok=True)
        raise
    return key.key_id
