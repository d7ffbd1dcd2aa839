"""One load-balancing policy for every internal gRPC channel: each call to any ready pod, in turn.

gRPC keeps one long-lived HTTP/2 connection per channel, and its default policy (pick_first) sends
every call over it. Behind a ClusterIP Service that connection lands on one pod chosen by
kube-proxy when it was opened, so pods the autoscaler adds get no traffic from channels already
open. Instead the target names every pod (`dns:///embedder.imagesearch.svc.cluster.local:50052`
against a headless Service, one A record per ready pod; locally a list such as
`ipv4:127.0.0.1:50052,127.0.0.1:50062`) and `round_robin` keeps a connection to each address and
sends each call to the next one that is connected. A plain `host:port` still works (one address,
one connection, as before).

The resolver looks again whenever one of those connections closes. Our servers close each
connection after `keepalive.MAX_CONNECTION_AGE_MS` (a GOAWAY: calls in flight finish), so a
client learns of new pods within about that long without any call failing.

A pod that dies (killed, OOM, node lost) resets its connections: round_robin stops picking it at
once, and the calls that were on it fail UNAVAILABLE. `retry_methods` names the calls that are
safe to send again (they change nothing: embedding an image, a search, a read); gRPC retries those
once on UNAVAILABLE, on the next pod, within the call's own deadline, so the caller never sees the
dead pod. Retries are throttled (`retryThrottling`): when most calls fail (every pod down) they
stop, rather than doubling the load on whatever is left. A pod that hangs without closing its
connections (SIGSTOP, a wedged process) is dropped only when its keepalive ping goes unanswered
(imagesearch.common.keepalive: within TIME_MS + TIMEOUT_MS); calls sent to it meanwhile wait out
their deadline, which no retry can undo.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

POLICY = "round_robin"
# One retry: with several pods the next one answers; with one pod down there is nothing better.
RETRY_ATTEMPTS = 2
RETRY_INITIAL_BACKOFF = "0.05s"
RETRY_MAX_BACKOFF = "0.2s"
# Retries stop while more than half of the last ~10 calls failed (gRPC's token bucket: each
# failure takes a token, each success gives back 0.1; retries only above half the tokens).
RETRY_TOKENS = 10
RETRY_TOKEN_RATIO = 0.1


def service_config(retry_methods: Sequence[tuple[str, str]] = ()) -> str:
    """The channel's service config (JSON): round_robin, and a retry on UNAVAILABLE for each
    (service, method) in `retry_methods` (fully qualified service name, method name)."""
    config: dict[str, object] = {"loadBalancingConfig": [{POLICY: {}}]}
    if retry_methods:
        config["methodConfig"] = [
            {
                "name": [{"service": service, "method": method} for service, method in retry_methods],
                "retryPolicy": {
                    "maxAttempts": RETRY_ATTEMPTS,
                    "initialBackoff": RETRY_INITIAL_BACKOFF,
                    "maxBackoff": RETRY_MAX_BACKOFF,
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
        config["retryThrottling"] = {"maxTokens": RETRY_TOKENS, "tokenRatio": RETRY_TOKEN_RATIO}
    return json.dumps(config, separators=(",", ":"))


def client_options(
    retry_methods: Sequence[tuple[str, str]] = (), max_request_bytes: int = 0
) -> list[tuple[str, str | int]]:
    """Channel options for balancing (and retries). gRPC keeps a copy of each request it may retry,
    up to a per-call buffer (256 KiB by default): a bigger request is sent once, not retried, so
    `max_request_bytes` (the channel's largest request) raises the buffer to fit it."""
    options: list[tuple[str, str | int]] = [
        ("grpc.service_config", service_config(retry_methods)),
        # Ours is the only config: a resolver's (DNS TXT records) would replace it silently.
        ("grpc.service_config_disable_resolution", 1),
    ]
    if retry_methods:
        options.append(("grpc.enable_retries", 1))
        if max_request_bytes:
            options.append(("grpc.per_rpc_retry_buffer_size", max_request_bytes))
    return options
