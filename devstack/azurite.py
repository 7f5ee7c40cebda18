"""Azurite (the Azure Storage emulator from npm) as a child process on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .tls import self_signed_certificate

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key (not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


class Azurite:
    """One in-memory Azurite service (``blob``, or ``queue`` for multi-tenant fan-out),
    started and stopped by this object.

    With ``oauth=True`` it serves HTTPS with a self-signed certificate (``cert_file``) and
    accepts Entra-style bearer tokens, as Azure Storage does for managed identities.
    """

    def __init__(self, oauth: bool = False, memory_mb: int = 1024, service: str = "blob") -> None:
        self.service = service
        self.port = 0
        self.oauth = oauth
        self.memory_mb = memory_mb
        self.cert_file: Path | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def blob_service_uri(self) -> str:
        """The blob endpoint, account included (Azurite puts the account in the path)."""
        scheme = "https" if self.oauth else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """Connection string of the running emulator."""
        scheme = "https" if self.oauth else "http"
        endpoint = f"{self.service.capitalize()}Endpoint"
        return (
            f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"{endpoint}={scheme}://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def _tls_arguments(self) -> list[str]:
        if not self.oauth:
            return []
        self._tempdir = tempfile.TemporaryDirectory(prefix="azurite-tls-")
        cert, key = self_signed_certificate(Path(self._tempdir.name))
        self.cert_file = cert
        return ["--cert", str(cert), "--key", str(key), "--oauth", "basic"]

    def start(self, attempts: int = 3) -> None:
        """Start Azurite on a free port (retrying if another process grabbed the port first)."""
        binary = ROOT / "node_modules" / ".bin" / f"azurite-{self.service}"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `npm ci` (or `make node_modules`) first")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is required for Azurite: install it and run `npm ci`")
        tls = self._tls_arguments()
        for attempt in range(attempts):
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    str(binary),
                    f"--{self.service}Host",
                    "127.0.0.1",
                    f"--{self.service}Port",
                    str(self.port),
                    "--inMemoryPersistence",
                    "--extentMemoryLimit",
                    str(self.memory_mb),
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                    *tls,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for_port(self.port, timeout=30, process=self._process)
                return
            except RuntimeError:
                self._stop_process()
                if attempt == attempts - 1:
                    self.stop()
                    raise

    def stop(self) -> None:
        """Stop the emulator (its data is lost: it is in memory) and remove its certificate."""
        self._stop_process()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def _stop_process(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
