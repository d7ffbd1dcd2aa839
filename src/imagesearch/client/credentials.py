"""The API key a client sends: found in the environment, sent as `authorization: Bearer <key>`.

`IMAGESEARCH_API_KEY` holds a key, `IMAGESEARCH_API_KEY_FILE` a file that holds one (the CLI
also looks in the local stack's runtime folder: imagesearch.cli.common). The key travels as
metadata on every call of the channel, never in logs.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

ENV_KEY = "IMAGESEARCH_API_KEY"
ENV_KEY_FILE = "IMAGESEARCH_API_KEY_FILE"


class CredentialsError(ValueError):
    pass


def read_key_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise CredentialsError(f"cannot read the API key file {path}: {err.strerror}") from err
    if not token:
        raise CredentialsError(f"the API key file {path} is empty")
    return token


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY, "").strip():
        return env[ENV_KEY].strip()
    if env.get(ENV_KEY_FILE, "").strip():
        return read_key_file(Path(env[ENV_KEY_FILE]).expanduser())
    return None


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return () if not api_key else (("authorization", f"Bearer {api_key}"),)


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class KeyInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds the key to every unary call of a (synchronous) channel."""

    def __init__(self, api_key: str) -> None:
        self._metadata = metadata(api_key)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        extended = _Details(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        return continuation(extended, request)


class AioKeyInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """The same for an asyncio channel."""

    def __init__(self, api_key: str) -> None:
        self._metadata = metadata(api_key)

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        extended = grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*(tuple(details.metadata or ())), *self._metadata),
            details.credentials,
            details.wait_for_ready,
        )
        return await continuation(extended, request)
