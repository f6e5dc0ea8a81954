"""Throw-away TLS material for tests: a CA and a server certificate it signed, made with ``openssl``."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "make_certificates"]


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA clients trust, and the server's certificate and key (for 127.0.0.1, localhost)."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*arguments: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make test certificates"
    subprocess.run([openssl, *arguments], check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> Certificates:
    """A fresh CA (1 day) and a server certificate for ``127.0.0.1`` and ``localhost``, signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    cert, key, request = (
        folder / "server.pem",
        folder / "server-key.pem",
        folder / "server.csr",
    )
    extensions = folder / "server.ext"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=riskstream test CA", "-keyout", str(ca_key), "-out", str(ca),
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)
