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

Servers also close every connection after `MAX_CONNECTION_AGE_MS` (gRPC core adds +-10 % jitter,
so a client's connections do not all age out together): a GOAWAY that lets calls in flight finish
for up to `MAX_CONNECTION_AGE_GRACE_MS`, after which the client reconnects and, first, resolves
the target again (imagesearch.common.balancing). That is how a client balancing over a headless
Service learns of pods added since it connected; without it, only a lost connection would.
"""

from __future__ import annotations

TIME_MS = 10_000
TIMEOUT_MS = 5_000
# What a server accepts: pings at most this often, without calls, without limit of strikes.
MIN_PING_INTERVAL_MS = 5_000
RECONNECT_INITIAL_MS = 250
RECONNECT_MAX_MS = 2_000
# Two minutes: the autoscalers add pods every 30 s under load, and a pod that gets no traffic for
# minutes is capacity paid for and wasted (and the pods already there stay overloaded meanwhile).
# With several pods a client's connections age out at staggered times, so it re-resolves more
# often than this (down to gRPC's 30 s minimum between DNS look-ups). Cheap: one reconnect per
# client and pod every two minutes, and no call fails (the other pods take calls meanwhile).
MAX_CONNECTION_AGE_MS = 120_000
# At least the longest deadline our clients set on internal calls (the gateway's embed deadline,
# 15 s), and the same 30 s a pod is given to drain on SIGTERM: a call that may run that long on a
# stopping pod may run that long on an aged connection.
MAX_CONNECTION_AGE_GRACE_MS = 30_000


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
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
    ]


def triton_server_flags() -> list[str]:
    """tritonserver's spelling of `server_options()`."""
    return [
        "--grpc-keepalive-permit-without-calls=true",
        f"--grpc-http2-min-recv-ping-interval-without-data={MIN_PING_INTERVAL_MS}",
        "--grpc-http2-max-ping-strikes=0",
        f"--grpc-max-connection-age={MAX_CONNECTION_AGE_MS}",
        f"--grpc-max-connection-age-grace={MAX_CONNECTION_AGE_GRACE_MS}",
    ]
