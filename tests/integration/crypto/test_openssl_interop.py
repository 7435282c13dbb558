"""SM2 signatures interoperate with OpenSSL's own SM2 (an independent implementation).

Runs the ``openssl`` command line; skipped where it is missing or has no SM2. The message is a
Provenance-style canonical resource, so what a regulator verifies with OpenSSL is what we sign.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from carenet.crypto import sm2
from carenet.crypto.signing import canonical_json

OPENSSL = shutil.which("openssl")


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)


@pytest.fixture
def openssl_key(tmp_path: Path) -> tuple[Path, str, str]:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    pem = tmp_path / "key.pem"
    if openssl("genpkey", "-algorithm", "SM2", "-out", str(pem)).returncode != 0:
        pytest.skip("this openssl has no SM2")
    text = openssl("pkey", "-in", str(pem), "-text", "-noout").stdout
    priv = re.search(r"priv:\s*((?:[0-9a-f]{2}:?\s*)+)", text)
    pub = re.search(r"pub:\s*((?:[0-9a-f]{2}:?\s*)+)", text)
    assert priv and pub, text
    private_hex = re.sub(r"[:\s]", "", priv.group(1))[-64:].rjust(64, "0")
    public_hex = re.sub(r"[:\s]", "", pub.group(1))
    return pem, private_hex, public_hex


def a_message(tmp_path: Path) -> tuple[Path, bytes]:
    data = canonical_json(
        {"resourceType": "Patient", "id": str(uuid.uuid4()), "meta": {"versionId": "1"}}
    )
    path = tmp_path / "message.json"
    path.write_bytes(data)
    return path, data


def test_openssl_verifies_a_signature_we_made(tmp_path, openssl_key):
    pem, private_hex, public_hex = openssl_key
    assert sm2.public_key_of(private_hex) == public_hex
    path, data = a_message(tmp_path)
    sig = tmp_path / "sig.der"
    sig.write_bytes(sm2.sign(private_hex, public_hex, data))
    result = openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-inkey", str(pem),
        "-pkeyopt", "distid:1234567812345678", "-in", str(path), "-sigfile", str(sig),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_we_verify_a_signature_openssl_made(tmp_path, openssl_key):
    pem, _, public_hex = openssl_key
    path, data = a_message(tmp_path)
    sig = tmp_path / "sig.der"
    result = openssl(
        "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(pem),
        "-pkeyopt", "distid:1234567812345678", "-in", str(path), "-out", str(sig),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sm2.verify(public_hex, data, sig.read_bytes())
    assert not sm2.verify(public_hex, data + b" ", sig.read_bytes())
