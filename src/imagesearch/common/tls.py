"""TLS for a listener from certificate files, picked up again when they are replaced.

cert-manager, a Kubernetes Secret update or a renewal script replaces the files in place; each
new connection's handshake asks `_Reloader` for the configuration, which re-reads the files when
they changed (so rotation needs no restart; connections already open keep their session). With
a client CA, callers must present a certificate it signed (mutual TLS).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

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

    def _stat(self) -> tuple[int, ...]:
        paths = [self._files.cert, self._files.key, *([self._files.client_ca] if self._files.client_ca else [])]
        stamps: list[int] = []
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                return ()
            stamps += [st.st_ino, st.st_mtime_ns, st.st_size]
        return tuple(stamps)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """None: keep the configuration in use (gRPC's convention)."""
        with self._lock:
            stamp = self._stat()
            if not stamp or stamp == self._stamp:
                return None
            try:
                config = self._files.read()
            except OSError as err:  # half-replaced: the next handshake tries again
                log.warning("%s: TLS files changed but cannot be read yet: %s", self._name, err)
                return None
            self._stamp = stamp
            log.info("%s: TLS certificate reloaded from %s", self._name, self._files.cert)
            return config


def server_credentials(files: TlsFiles, name: str) -> grpc.ServerCredentials:
    return grpc.dynamic_ssl_server_credentials(
        files.read(),
        _Reloader(files, name),  # type: ignore[arg-type]  # returning None is gRPC's "unchanged"
        require_client_authentication=files.client_ca is not None,
    )
