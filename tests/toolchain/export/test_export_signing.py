"""The signing half: ``toolchain keygen``, ``toolchain sign``, ``export --sign`` and the bundle writer's
signature; every mistake is one line on stderr, exit 2, and nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from runtime.bundle import MANIFEST_NAME, BundleError, load_bundle
from runtime.signing import SIGNATURE_NAME, SignatureError, TrustPolicy, load_public_key
from tests.conftest import run_toolchain
from tests.toolchain.export.test_bundle_writer import FILES, fields
from toolchain.export.bundle import write_bundle
from toolchain.export.signing import generate_keypair, load_signing_key, sign_bundle


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def tc(capsys):
    """``toolchain ARGS`` in this process (main() exactly as the console script runs it; torch is
    already imported here, so each call takes milliseconds instead of a fresh interpreter's seconds)."""
    import toolchain.cli as cli

    def run(*args: str) -> _Result:
        capsys.readouterr()
        rc = cli.main(list(args))
        out, err = capsys.readouterr()
        return _Result(rc, out, err)

    return run


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    return generate_keypair(tmp_path_factory.mktemp("keys"), name="vendor")


# ------------------------------------------------------------------------------ keygen
def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path):
    r = run_toolchain("keygen", "--out", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    key, pub = tmp_path / "k" / "hx-signing.key", tmp_path / "k" / "hx-signing.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    kid = load_public_key(pub).key_id
    assert kid in r.stdout and load_signing_key(key).key_id == kid
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["hx-signing.key", "hx-signing.pub"]  # no temp files


def test_keygen_never_overwrites_without_being_asked(tmp_path, tc):
    kp = generate_keypair(tmp_path, name="x")
    before = (kp.private_path.read_bytes(), kp.public_path.read_bytes())
    r = tc("keygen", "--out", str(tmp_path), "--name", "x")
    _one_line_error(r, "toolchain keygen: error:", "x.key: already exists (pass --overwrite")
    assert (kp.private_path.read_bytes(), kp.public_path.read_bytes()) == before
    r = tc("keygen", "--out", str(tmp_path), "--name", "x", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert kp.private_path.read_bytes() != before[0] and stat.S_IMODE(kp.private_path.stat().st_mode) == 0o600
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    _one_line_error(tc("keygen", "--out", str(blocker)), "file: exists and is not a directory")


# --------------------------------------------------------------------- the bundle writer
def test_write_bundle_signs_before_the_rename(tmp_path, keypair):
    key = load_signing_key(keypair.private_path)
    out = write_bundle(tmp_path / "b", fields(), FILES, signing_key=key)
    sig = json.loads((out / SIGNATURE_NAME).read_text())
    assert sig["key_id"] == key.key_id and sig["format"] == "hx-ed25519-v1"
    trusted = TrustPolicy(keys=(load_public_key(keypair.public_path),), require=True)
    assert load_bundle(out, trust=trusted).signature.key_id == key.key_id
    with pytest.raises(BundleError, match="no trusted key was given"):
        load_bundle(out, trust=TrustPolicy())
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary directory left


def test_load_signing_key_refuses_what_is_not_a_private_ed25519_key(tmp_path, keypair):
    with pytest.raises(SignatureError, match="is a public key; --sign needs the private key"):
        load_signing_key(keypair.public_path)
    with pytest.raises(SignatureError, match="signing key not found"):
        load_signing_key(tmp_path / "none.key")
    (tmp_path / "junk.key").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SignatureError, match="not a PEM private key"):
        load_signing_key(tmp_path / "junk.key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    enc = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    (tmp_path / "enc.key").write_bytes(enc)
    with pytest.raises(SignatureError, match="the private key is encrypted"):
        load_signing_key(tmp_path / "enc.key")


# ---------------------------------------------------------------- toolchain sign / export
def test_sign_an_exported_bundle_then_inspect_it(default_bundle, keypair, tmp_path, tc):
    b = tmp_path / "b"
    shutil.copytree(default_bundle, b)
    r = run_toolchain("sign", str(b), "--key", str(keypair.private_path))
    assert r.returncode == 0, r.stderr
    kid = load_public_key(keypair.public_path).key_id
    assert kid in r.stdout
    r = tc("inspect", str(b), "--trusted-key", str(keypair.public_path))
    assert r.returncode == 0, r.stderr
    assert f"verified: key id {kid}" in " ".join(r.stdout.split())
    _one_line_error(tc("inspect", str(b)), "toolchain inspect: error:", "no trusted key was given")
    # Signing twice is refused: re-signing is a deliberate act.
    _one_line_error(tc("sign", str(b), "--key", str(keypair.private_path)),
                    "toolchain sign: error:", "already signed; remove manifest.sig first")


def test_sign_refuses_a_damaged_bundle_and_leaves_no_signature(default_bundle, keypair, tmp_path, tc):
    b = tmp_path / "b"
    shutil.copytree(default_bundle, b)
    raw = bytearray((b / "model.onnx").read_bytes())
    raw[100] ^= 1
    (b / "model.onnx").write_bytes(bytes(raw))
    _one_line_error(tc("sign", str(b), "--key", str(keypair.private_path)),
                    "toolchain sign: error:", "model.onnx: sha256 mismatch")
    assert not (b / SIGNATURE_NAME).exists() and not list(b.glob(".manifest.sig*"))


def test_export_with_a_bad_signing_key_fails_before_any_work(keypair, tmp_path, tc):
    out = tmp_path / "bundle"
    r = tc("export", "--target", "rpi", "--sign", str(tmp_path / "missing.key"), "--out", str(out))
    _one_line_error(r, "toolchain export: error:", "missing.key: signing key not found")
    r = tc("export", "--target", "rpi", "--sign", str(keypair.public_path), "--out", str(out))
    _one_line_error(r, "toolchain export: error:", "is a public key; --sign needs the private key")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_passes_the_signing_key_to_the_pipeline(keypair, tmp_path, monkeypatch):
    """The CLI half of `export --sign` (the writer half is test_write_bundle_signs_before_the_rename)."""
    import toolchain.cli as cli
    import toolchain.export.pipeline as pipeline

    seen = {}

    class Stop(Exception):
        pass

    def fake_export(opts, progress=None):
        seen["key"] = opts.signing_key
        raise Stop

    monkeypatch.setattr(pipeline, "export_bundle", fake_export)
    with pytest.raises(Stop):
        cli.main(["export", "--target", "rpi", "--sign", str(keypair.private_path), "--out", str(tmp_path / "b"),
                  "--quiet"])
    assert seen["key"].key_id == load_public_key(keypair.public_path).key_id


def test_sign_bundle_refuses_a_symlinked_signature(default_bundle, keypair, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(default_bundle, b)
    (tmp_path / "x").write_text("{}")
    (b / SIGNATURE_NAME).symlink_to(tmp_path / "x")
    with pytest.raises(SignatureError, match="already signed"):
        sign_bundle(b, load_signing_key(keypair.private_path))
    assert (b / MANIFEST_NAME).is_file() and os.path.islink(b / SIGNATURE_NAME)
