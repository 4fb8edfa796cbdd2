"""Signed bundles on the device side: every tampering case is refused with a one-line reason.

The keys and signatures here are made with ``cryptography`` directly (not the toolchain's
signing code), so the runtime's verifier is checked against an independent signer. Bundles are
the hand-written ones of test_bundle.py; the CLI cases at the end use the real exported bundle.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from runtime.bundle import FORMAT_VERSION, MANIFEST_NAME, BundleError, load_bundle
from runtime.signing import (
    SIGNATURE_NAME,
    SignatureError,
    TrustPolicy,
    key_id,
    load_public_key,
    load_trusted_keys,
    signature_file_bytes,
)
from tests.conftest import REPO
from tests.runtime.test_bundle import edit_manifest, make_bundle


# ------------------------------------------------------------------------------ helpers
class Signer:
    """An Ed25519 key pair on disk (``NAME.pub``), signing with cryptography directly."""

    def __init__(self, d: Path, name: str) -> None:
        self.key = ed25519.Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(raw)
        self.pub = d / f"{name}.pub"
        self.pub.write_bytes(self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
        self.pem = d / f"{name}.key"
        self.pem.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))

    def sign(self, root: Path, *, claim_key_id: str | None = None) -> None:
        """Write ``manifest.sig`` over the bundle's current manifest bytes."""
        sig = self.key.sign((root / MANIFEST_NAME).read_bytes())
        (root / SIGNATURE_NAME).write_bytes(signature_file_bytes(claim_key_id or self.key_id, sig))

    def policy(self, require: bool = False) -> TrustPolicy:
        return TrustPolicy(keys=load_trusted_keys([self.pub]), require=require,
                           require_reason="test" if require else "")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Signer]:
    d = tmp_path_factory.mktemp("keys")
    return {"vendor": Signer(d, "vendor"), "attacker": Signer(d, "attacker")}


@pytest.fixture
def signed(tmp_path: Path, keys: dict[str, Signer]) -> Path:
    root = make_bundle(tmp_path / "bundle")
    keys["vendor"].sign(root)
    return root


def refused(root: Path, trust: TrustPolicy) -> str:
    with pytest.raises(BundleError) as e:
        load_bundle(root, trust=trust)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------ the good cases
def test_a_signed_bundle_loads_with_its_key(signed: Path, keys: dict[str, Signer]) -> None:
    b = load_bundle(signed, trust=keys["vendor"].policy(require=True))
    assert b.signature is not None and b.signature.key_id == keys["vendor"].key_id
    assert b.signature.key_source == str(keys["vendor"].pub)


def test_an_unsigned_bundle_loads_where_signatures_are_optional(tmp_path: Path, keys: dict[str, Signer]) -> None:
    root = make_bundle(tmp_path / "b")
    assert load_bundle(root, trust=TrustPolicy()).signature is None
    assert load_bundle(root, trust=keys["vendor"].policy()).signature is None


def test_a_directory_of_trusted_keys(signed: Path, keys: dict[str, Signer]) -> None:
    policy = TrustPolicy(keys=load_trusted_keys([keys["vendor"].pub.parent]))
    assert {k.key_id for k in policy.keys} == {keys["vendor"].key_id, keys["attacker"].key_id}
    assert load_bundle(signed, trust=policy).signature.key_id == keys["vendor"].key_id


# ----------------------------------------------------------------------- tampering cases
def test_signed_bundle_without_any_trusted_key_is_refused(signed: Path, keys: dict[str, Signer]) -> None:
    kid = keys["vendor"].key_id
    assert refused(signed, TrustPolicy()) == (
        f"{signed / SIGNATURE_NAME}: the bundle is signed (key id {kid}) but no trusted key was given to verify it "
        "(pass --trusted-key FILE, set runtime.trusted_keys in the board file, or HX_TRUSTED_KEYS)")


def test_resigned_by_another_key_is_refused(signed: Path, keys: dict[str, Signer]) -> None:
    edit_manifest(signed, lambda d: d.update(output_limit=1.0))  # the attacker's own bundle ...
    keys["attacker"].sign(signed)  # ... signed with the attacker's key
    assert refused(signed, keys["vendor"].policy()) == (
        f"{signed / SIGNATURE_NAME}: signed by key id {keys['attacker'].key_id}, which is not a trusted key "
        f"(trusted: {keys['vendor'].key_id})")


def test_resigned_by_another_key_claiming_the_trusted_key_id_is_refused(signed: Path, keys: dict[str, Signer]) -> None:
    keys["attacker"].sign(signed, claim_key_id=keys["vendor"].key_id)
    assert refused(signed, keys["vendor"].policy()) == (
        f"{signed / SIGNATURE_NAME}: signature does not verify against manifest.json with trusted key "
        f"{keys['vendor'].key_id} (the manifest was changed, or it was signed by another key)")


def _bad_signature(root: Path, kid: str) -> str:
    return (f"{root / SIGNATURE_NAME}: signature does not verify against manifest.json with trusted key {kid} "
            "(the manifest was changed, or it was signed by another key)")


def test_tampered_manifest_is_refused_even_with_a_valid_digest(signed: Path, keys: dict[str, Signer]) -> None:
    # Raising the output limit is the dangerous edit; re-sealing manifest_sha256 is easy.
    edit_manifest(signed, lambda d: d.update(output_limit=1.0))
    assert refused(signed, keys["vendor"].policy()) == _bad_signature(signed, keys["vendor"].key_id)


def test_reformatted_manifest_is_refused(signed: Path, keys: dict[str, Signer]) -> None:
    """The signature covers the exact bytes: even an equivalent re-indentation breaks it."""
    d = json.loads((signed / MANIFEST_NAME).read_text())
    (signed / MANIFEST_NAME).write_text(json.dumps(d, indent=4))
    assert refused(signed, keys["vendor"].policy()) == _bad_signature(signed, keys["vendor"].key_id)


def test_truncated_manifest_is_refused(signed: Path, keys: dict[str, Signer]) -> None:
    raw = (signed / MANIFEST_NAME).read_bytes()
    (signed / MANIFEST_NAME).write_bytes(raw[: len(raw) // 2])
    assert refused(signed, keys["vendor"].policy()) == _bad_signature(signed, keys["vendor"].key_id)


@pytest.mark.parametrize("how", ["flip", "truncate", "remove"])
def test_tampered_model_file_is_refused(signed: Path, keys: dict[str, Signer], how: str) -> None:
    """The signature is valid (the manifest is untouched): the manifest's sha256 catches the file."""
    f = signed / "model_int8.tflite"
    raw = bytearray(f.read_bytes())
    if how == "flip":
        raw[len(raw) // 2] ^= 0x01
        f.write_bytes(bytes(raw))
    elif how == "truncate":
        f.write_bytes(bytes(raw[:-1]))
    else:
        f.unlink()
    want = f"{f} is missing" if how == "remove" else f"{f}: sha256 mismatch (file changed or corrupt)"
    assert refused(signed, keys["vendor"].policy()) == want


@pytest.mark.parametrize("damage,words", [
    (lambda b: b[: len(b) // 2], "; truncated or corrupt?)"),
    (lambda b: b"", "malformed signature file (Expecting value; truncated or corrupt?)"),
    (lambda b: b.replace(b"hx-ed25519-v1", b"hx-rsa-v9"), "unknown signature format 'hx-rsa-v9'"),
    (lambda b: b.replace(b'"key_id": "', b'"key_id": "X'), "is not 16 lower-case hex digits"),
    (lambda b: b"\xff\xfe" + b, "malformed signature file (not UTF-8"),
    (lambda b: b + b" " * 5000, "malformed signature file (over 4096 bytes)"),
])
def test_damaged_signature_file_is_refused(signed: Path, keys: dict[str, Signer], damage: Any, words: str) -> None:
    p = signed / SIGNATURE_NAME
    p.write_bytes(damage(p.read_bytes()))
    msg = refused(signed, keys["vendor"].policy())
    assert msg.startswith(f"{p}: ") and words in msg, msg


def test_flipped_signature_bits_are_refused(signed: Path, keys: dict[str, Signer]) -> None:
    p = signed / SIGNATURE_NAME
    doc = json.loads(p.read_text())
    sig = bytearray(base64.b64decode(doc["signature"]))
    sig[10] ^= 0x80
    doc["signature"] = base64.b64encode(bytes(sig)).decode()
    p.write_text(json.dumps(doc))
    assert refused(signed, keys["vendor"].policy()) == _bad_signature(signed, keys["vendor"].key_id)
    doc["signature"] = base64.b64encode(bytes(sig[:63])).decode()
    p.write_text(json.dumps(doc))
    assert "signature is not base64 of 64 bytes" in refused(signed, keys["vendor"].policy())


def test_unsigned_bundle_is_refused_where_signatures_are_required(signed: Path, keys: dict[str, Signer]) -> None:
    (signed / SIGNATURE_NAME).unlink()  # stripping the signature is the cheapest attack of all
    assert refused(signed, keys["vendor"].policy(require=True)) == (
        f"{signed}: bundle is not signed (manifest.sig missing) but a signature is required (test)")


def test_downgrade_is_refused_even_when_properly_signed(signed: Path, keys: dict[str, Signer]) -> None:
    """An old format signed by the right key (a genuine old bundle, or a replay) is still refused."""
    edit_manifest(signed, lambda d: d.update(format_version=FORMAT_VERSION - 1))
    keys["vendor"].sign(signed)
    assert refused(signed, keys["vendor"].policy(require=True)) == (
        f"{signed / MANIFEST_NAME}: format_version {FORMAT_VERSION - 1} is older than this runtime accepts "
        f"(expects {FORMAT_VERSION}); refusing a downgrade")


def test_signature_that_is_not_a_regular_file_is_refused(signed: Path, keys: dict[str, Signer], tmp_path: Path) -> None:
    p = signed / SIGNATURE_NAME
    shutil.copy(p, tmp_path / "elsewhere.sig")
    p.unlink()
    p.symlink_to(tmp_path / "elsewhere.sig")
    assert refused(signed, keys["vendor"].policy()) == f"{p}: not a regular file"


def test_listing_the_signature_in_the_manifest_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, lambda d: d["files"].update({SIGNATURE_NAME: "0" * 64}))
    msg = refused(root, TrustPolicy())
    assert "manifest.json cannot list manifest.sig (the signature is made over it)" in msg


# -------------------------------------------------------------------------- trusted keys
def test_bad_trusted_key_files(tmp_path: Path, keys: dict[str, Signer]) -> None:
    with pytest.raises(SignatureError, match="trusted key file not found"):
        load_public_key(tmp_path / "nope.pub")
    with pytest.raises(SignatureError, match="is a private key; give the runtime the public key"):
        load_public_key(keys["vendor"].pem)
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(SignatureError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "rsa.pub").write_bytes(rsa_pub.public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SignatureError, match=r"rsa\.pub: is a .*RSA.* key; expected Ed25519"):
        load_public_key(tmp_path / "rsa.pub")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SignatureError, match="no \\*.pub trusted keys in this directory"):
        load_trusted_keys([tmp_path / "empty"])


def test_environment_policy(signed: Path, keys: dict[str, Signer], tmp_path: Path) -> None:
    """HX_TRUSTED_KEYS / HX_REQUIRE_SIGNATURE reach tools that load a bundle by path."""
    env = {"HX_TRUSTED_KEYS": os.pathsep.join([str(keys["attacker"].pub), str(keys["vendor"].pub)])}
    p = TrustPolicy.from_env(env)
    assert load_bundle(signed, trust=p).signature.key_id == keys["vendor"].key_id
    unsigned = make_bundle(tmp_path / "u")
    p = TrustPolicy.from_env({"HX_REQUIRE_SIGNATURE": "1", **env})
    assert "but a signature is required (HX_REQUIRE_SIGNATURE=1)" in refused(unsigned, p)
    with pytest.raises(SignatureError, match="HX_REQUIRE_SIGNATURE='yes': expected 1"):
        TrustPolicy.from_env({"HX_REQUIRE_SIGNATURE": "yes"})
    with pytest.raises(SignatureError, match="HX_TRUSTED_KEYS: .*trusted key file not found"):
        TrustPolicy.from_env({"HX_TRUSTED_KEYS": str(tmp_path / "gone.pub")})


def test_policies_only_tighten_when_merged(keys: dict[str, Signer]) -> None:
    a = keys["vendor"].policy(require=True)
    b = TrustPolicy(keys=load_trusted_keys([keys["attacker"].pub]))
    m = b.merged(a)
    assert m.require and m.require_reason == "test"
    assert {k.key_id for k in m.keys} == {keys["vendor"].key_id, keys["attacker"].key_id}


# ---------------------------------------------------------------- the real CLI, one line
def _run(*args: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("HX_TRUSTED_KEYS", "HX_REQUIRE_SIGNATURE")}
    e["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=REPO, env=e)


@pytest.fixture(scope="module")
def real_signed(default_bundle, keys, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("real") / "signed"
    shutil.copytree(default_bundle, d)
    keys["vendor"].sign(d)
    return d


def _one_line_refusal(r: subprocess.CompletedProcess, prefix: str, text: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0] == f"{prefix}: error: {text}", lines[0]


def test_cli_runs_a_signed_bundle_with_its_key_and_refuses_it_without(real_signed, keys, tmp_path):
    wav = REPO / "toolchain" / "assets" / "demo_speech.wav"
    out = tmp_path / "o.wav"
    r = _run("runtime", "run", str(real_signed), "--input", str(wav), "--output", str(out), "--backend", "ckernel",
             "--trusted-key", str(keys["vendor"].pub), "--require-signature")
    assert r.returncode == 0, r.stderr
    assert out.is_file()
    out.unlink()
    r = _run("runtime", "run", str(real_signed), "--input", str(wav), "--output", str(out))
    _one_line_refusal(r, "python -m runtime run",
                      f"{real_signed / SIGNATURE_NAME}: the bundle is signed (key id {keys['vendor'].key_id}) but no "
                      "trusted key was given to verify it (pass --trusted-key FILE, set runtime.trusted_keys in the "
                      "board file, or HX_TRUSTED_KEYS)")
    assert not out.exists()


def test_cli_refuses_tampered_and_unsigned_bundles(real_signed, keys, tmp_path):
    wav = REPO / "toolchain" / "assets" / "demo_speech.wav"
    out = tmp_path / "o.wav"
    trust = ("--trusted-key", str(keys["vendor"].pub))
    # A flipped byte in the int8 model.
    t = tmp_path / "tampered"
    shutil.copytree(real_signed, t)
    raw = bytearray((t / "model_int8.tflite").read_bytes())
    raw[len(raw) // 3] ^= 0x40
    (t / "model_int8.tflite").write_bytes(bytes(raw))
    r = _run("runtime", "run", str(t), "--input", str(wav), "--output", str(out), *trust)
    _one_line_refusal(r, "python -m runtime run", f"{t / 'model_int8.tflite'}: sha256 mismatch (file changed or corrupt)")
    # Re-signed by another key after raising the output limit.
    a = tmp_path / "attacker"
    shutil.copytree(real_signed, a)
    edit_manifest(a, lambda d: d.update(output_limit=1.0))
    keys["attacker"].sign(a)
    r = _run("toolchain", "run", str(a), "--input", str(wav), "--output", str(out), *trust)
    _one_line_refusal(r, "toolchain run", f"{a / SIGNATURE_NAME}: signed by key id {keys['attacker'].key_id}, which is "
                                          f"not a trusted key (trusted: {keys['vendor'].key_id})")
    # Signature stripped, on a board that requires signatures.
    u = tmp_path / "unsigned"
    shutil.copytree(real_signed, u)
    (u / SIGNATURE_NAME).unlink()
    board = tmp_path / "locked.toml"
    text = (REPO / "boards" / "rpi4.toml").read_text().replace('name = "rpi4"', 'name = "locked"')
    text = text.replace("require_signature = false", f'require_signature = true\ntrusted_keys = ["{keys["vendor"].pub}"]')
    board.write_text(text)
    r = _run("runtime", "run", str(u), "--input", str(wav), "--output", str(out), "--board", str(board))
    _one_line_refusal(r, "python -m runtime run", f"{u}: bundle is not signed (manifest.sig missing) but a signature is "
                                                  "required (board locked: runtime.require_signature = true)")
    # The same bundle is fine where signatures are optional (a development host).
    r = _run("runtime", "run", str(u), "--input", str(wav), "--output", str(out), "--backend", "ckernel")
    assert r.returncode == 0, r.stderr
    out.unlink()
    # Downgraded: an older format_version, re-sealed and re-signed with the trusted key.
    g = tmp_path / "downgraded"
    shutil.copytree(real_signed, g)
    edit_manifest(g, lambda d: d.update(format_version=FORMAT_VERSION - 1))
    keys["vendor"].sign(g)
    r = _run("runtime", "run", str(g), "--input", str(wav), "--output", str(out), *trust)
    _one_line_refusal(r, "python -m runtime run", f"{g / MANIFEST_NAME}: format_version {FORMAT_VERSION - 1} is older "
                                                  f"than this runtime accepts (expects {FORMAT_VERSION}); refusing a downgrade")
    assert not out.exists() and not list(tmp_path.glob(".o.wav*"))
