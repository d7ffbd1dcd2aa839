"""`python -m imagesearch.common.probe [HOST:PORT] [SERVICE]`: exit 0 when the service reports
grpc.health.v1 SERVING, 1 otherwise (NOT_SERVING, or no answer within 3 s).

The container images' HEALTHCHECK and docker-compose run it; the local stack asks `status()`.
Without an address it probes 127.0.0.1:$IMAGESEARCH_PROBE_PORT (set by deploy/service.Dockerfile).
A listener serving TLS is probed over TLS when $IMAGESEARCH_PROBE_CA_FILE names the CA that signed
its certificate, checked for the name in $IMAGESEARCH_PROBE_TLS_NAME (default: localhost).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


def status(
    address: str, service: str = "", timeout: float = 1.0, ca_file: str = "", tls_name: str = "localhost"
) -> int | None:
    """The service's grpc.health.v1 status ("" = overall), or None when it does not answer."""
    try:
        channel = (
            grpc.secure_channel(
                address,
                grpc.ssl_channel_credentials(open(ca_file, "rb").read()),  # noqa: SIM115 - read at once
                options=[("grpc.ssl_target_name_override", tls_name)],
            )
            if ca_file
            else grpc.insecure_channel(address)
        )
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except (grpc.RpcError, OSError):
        return None
    return int(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    address = args[0] if args else f"127.0.0.1:{os.environ.get('IMAGESEARCH_PROBE_PORT', '50051')}"
    service = args[1] if len(args) > 1 else ""
    ca, name = (
        os.environ.get("IMAGESEARCH_PROBE_CA_FILE", ""),
        os.environ.get("IMAGESEARCH_PROBE_TLS_NAME", "localhost"),
    )
    return 0 if status(address, service, timeout=3.0, ca_file=ca, tls_name=name) == SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
