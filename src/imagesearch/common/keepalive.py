"""One keepalive policy for every gRPC channel of the fleet, and the servers that must accept it.

A peer that stops answering without closing its connection (a SIGSTOPped or wedged process, a
dropped NAT entry) is otherwise noticed only when a call's deadline passes. Clients ping every
`TIME_MS` even without calls in flight and drop the connection when a ping goes unanswered for
`TIMEOUT_MS`; the calls on it then fail UNAVAILABLE and the channel reconnects. Servers must
allow pings that often, or they answer them with GOAWAY ("too_many_pings"): our servers through
`server_options()`, Triton through `triton_server_flags()` (the local stack and the manifests).

Reconnects are bounded too: gRPC's default back-off between connection attempts grows to two
minutes, so a peer restarted after a long outage would be reached only that much later (seen: the
gateway found an embedder restarted after 27 s down only 20 s after it was SERVING). Inside a
cluster an attempt is cheap: at most `RECONNECT_MAX_MS` between them.
"""

from __future__ import annotations

TIME_MS = 10_000
TIMEOUT_MS = 5_000
# What a server accepts: pings at most this often, without calls, without limit of strikes.
MIN_PING_INTERVAL_MS = 5_000
RECONNECT_INITIAL_MS = 250
RECONNECT_MAX_MS = 2_000


def client_options() -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", TIME_MS),
        ("grpc.keepalive_timeout_ms", TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_INITIAL_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
    ]


def server_options() -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def triton_server_flags() -> list[str]:
    """tritonserver's spelling of `server_options()`."""
    return [
        "--grpc-keepalive-permit-without-calls=true",
        f"--grpc-http2-min-recv-ping-interval-without-data={MIN_PING_INTERVAL_MS}",
        "--grpc-http2-max-ping-strikes=0",
    ]
