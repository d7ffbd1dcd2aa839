"""TLS for a listener from certificate files, picked up again when they are replaced.

cert-manager, a Kubernetes Secret update or a renewal script replaces the files in place; each
new connection's handshake asks `_Reloader` for the configuration, which re-reads the files when
they changed (so rotation needs no restart; connections already open keep their session). With
a client CA, callers must present a certificate it signed (mutual TLS).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from imagesearch.common.config import SettingsError
from imagesearch.common.files import stamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM certificate chain
    key: Path  # PEM private key
    client_ca: Path | None = None  # PEM CA bundle: set, callers must present a certificate it signed

    def read(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
        )


class _Reloader:
    def __init__(self, files: TlsFiles, name: str) -> None:
        self._files, self._name = files, name
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, ...] | None:
        files = self._files
        return stamp(files.cert, files.key, *([files.client_ca] if files.client_ca else []))

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """None: keep the configuration in use (gRPC's convention)."""
        with self._lock:
            current = self._stat()
            if not current or current == self._stamp:
                return None
            try:
                config = self._files.read()
            except OSError as err:  # half-replaced: the next handshake tries again
                log.warning("%s: TLS files changed but cannot be read yet: %s", self._name, err)
                return None
            self._stamp = current
            log.info("%s: TLS certificate reloaded from %s", self._name, self._files.cert)
            return config


def server_credentials(files: TlsFiles, name: str) -> grpc.ServerCredentials:
    return grpc.dynamic_ssl_server_credentials(
        files.read(),
        _Reloader(files, name),  # type: ignore[arg-type]  # returning None is gRPC's "unchanged"
        require_client_authentication=files.client_ca is not None,
    )


def server_tls(cert: str, key: str, client_ca: str, names: tuple[str, str, str]) -> TlsFiles | None:
    """A service's listener TLS from its three settings (their variable names in `names`, for errors)."""
    if not cert and not key:
        if client_ca:
            raise SettingsError(f"{names[2]} asks for client certificates: it needs {names[0]} and {names[1]}")
        return None
    if not (cert and key):
        raise SettingsError(f"{names[0]} and {names[1]} go together: set both, or neither")
    return TlsFiles(Path(cert), Path(key), Path(client_ca) if client_ca else None)


@dataclass(frozen=True)
class ClientTls:
    """How a service calls another over TLS: the CA that signed its certificate, and optionally a
    certificate of our own for servers that require one (mutual TLS)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


def client_tls(ca: str, cert: str, key: str, names: tuple[str, str, str]) -> ClientTls | None:
    if not ca:
        if cert or key:
            raise SettingsError(f"{names[1]} and {names[2]} need {names[0]}, the CA of the servers called")
        return None
    if bool(cert) != bool(key):
        raise SettingsError(f"{names[1]} and {names[2]} go together: set both, or neither")
    return ClientTls(Path(ca), Path(cert) if cert else None, Path(key) if key else None)
