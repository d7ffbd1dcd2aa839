"""API keys: what a caller presents, what is kept of it, and the file the gateways read.

A key reads `isk_<id>_<secret>`. The id (8 hex digits) finds its record without trying every
hash and names the key in logs and listings; the secret (32 random bytes, base64url) proves it.
Only SHA-256 of the secret is kept: with 256 bits of entropy there is no dictionary to try, so a
fast hash is enough, and digests are compared in constant time.

The key file is JSON (`{"version": 1, "keys": [...]}`), written atomically (a temporary file
renamed over it) with mode 0600. Every gateway replica reads the same file (a volume, or a
Kubernetes Secret mounted into each pod) and reloads it when it changes: keys survive restarts,
are shared by replicas, and do not depend on Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagesearch.common.errors import DomainError
from imagesearch.common.files import write_private
from imagesearch.contracts.limits import check_catalog

PREFIX = "isk"
FILE_VERSION = 1
# A catalog that stands for every catalog, and how the default catalog ("" in the API) is written
# in key files and on the command line (neither is a valid catalog name).
ALL_CATALOGS = "*"
DEFAULT_CATALOG = "@default"
MAX_TOKEN_CHARS = 128  # longer is malformed before anything is hashed

_TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{8}})_([A-Za-z0-9_-]{{43}})$")


class Scope(StrEnum):
    SEARCH = "search"  # Search, GetProduct
    WRITE = "write"  # UpsertProducts, DeleteProducts
    ADMIN = "admin"  # DeleteCatalog; implies the others


class KeyFileError(ValueError):
    """The key file cannot be read as one (named, with what is wrong)."""


class MalformedKey(ValueError):
    """What the caller sent is not a key at all."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    digest: str  # SHA-256 of the secret, hex
    scopes: frozenset[Scope]
    catalogs: frozenset[str]  # API names ("" is the default catalog), or ALL_CATALOGS
    name: str = ""
    created: float = 0.0  # Unix seconds
    revoked: float | None = None
    rate_per_second: float | None = None  # None: the gateway's default

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def reaches(self, catalog: str) -> bool:
        return ALL_CATALOGS in self.catalogs or catalog in self.catalogs

    def proves(self, secret: str) -> bool:
        return hmac.compare_digest(self.digest, digest(secret))

    @property
    def catalog_names(self) -> list[str]:
        """For people: DEFAULT_CATALOG for the default one, sorted."""
        return sorted(display_catalog(c) for c in self.catalogs)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.digest,
            "scopes": sorted(self.scopes),
            "catalogs": self.catalog_names,
            "name": self.name,
            "created": self.created,
            "revoked": self.revoked,
            "rate_per_second": self.rate_per_second,
        }

    @staticmethod
    def from_json(item: Mapping[str, Any]) -> ApiKey:
        try:
            rate = item.get("rate_per_second")
            revoked = item.get("revoked")
            key = ApiKey(
                id=str(item["id"]),
                digest=str(item["sha256"]),
                scopes=frozenset(Scope(s) for s in item["scopes"]),
                catalogs=parse_catalogs(item["catalogs"]),
                name=str(item.get("name", "")),
                created=float(item.get("created", 0.0)),
                revoked=None if revoked is None else float(revoked),
                rate_per_second=None if rate is None else float(rate),
            )
        except (KeyError, TypeError, ValueError, DomainError) as err:
            raise KeyFileError(f"a key record is malformed ({err!r}): {dict(item)!r:.200}") from err
        if not re.fullmatch(r"[0-9a-f]{8}", key.id) or not re.fullmatch(r"[0-9a-f]{64}", key.digest):
            raise KeyFileError(f"key {key.id!r}: the id must be 8 hex digits and sha256 64")
        return key


def display_catalog(catalog: str) -> str:
    return DEFAULT_CATALOG if catalog == "" else catalog


def parse_catalogs(names: Iterable[str]) -> frozenset[str]:
    """Catalog names as written in key files and on the command line, as API names."""
    parsed: set[str] = set()
    for name in names:
        if name in (ALL_CATALOGS, DEFAULT_CATALOG):
            parsed.add("" if name == DEFAULT_CATALOG else name)
        else:
            parsed.add(check_catalog(name))
    if not parsed:
        raise ValueError(f"a key needs at least one catalog (a name, {DEFAULT_CATALOG} or {ALL_CATALOGS!r})")
    return frozenset(parsed)


def new_key(
    scopes: Iterable[Scope],
    catalogs: Iterable[str],
    *,
    name: str = "",
    rate_per_second: float | None = None,
    existing: Iterable[str] = (),
) -> tuple[ApiKey, str]:
    """A fresh key: its record, and the token to hand over (shown once, never stored)."""
    taken = set(existing)
    key_id = secrets.token_hex(4)
    while key_id in taken:
        key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    scope_set = frozenset(scopes)
    if not scope_set:
        raise ValueError("a key needs at least one scope: search, write or admin")
    record = ApiKey(
        key_id, digest(secret), scope_set, parse_catalogs(catalogs), name, time.time(), None, rate_per_second
    )
    return record, f"{PREFIX}_{key_id}_{secret}"


def split_token(token: str) -> tuple[str, str]:
    """(id, secret) of a token; MalformedKey when it is not shaped like one."""
    if len(token) > MAX_TOKEN_CHARS:
        raise MalformedKey(f"the API key is too long (over {MAX_TOKEN_CHARS} characters)")
    match = _TOKEN.match(token)
    if match is None:
        raise MalformedKey(f"not an API key (expected {PREFIX}_<8 hex digits>_<43 characters>)")
    return match.group(1), match.group(2)


def bearer_token(header: str) -> str:
    """The token of an `authorization: Bearer <token>` value."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MalformedKey("the authorization metadata must read 'Bearer <API key>'")
    return token.strip()


@dataclass(frozen=True)
class KeyRing:
    """The keys one file holds, by id."""

    keys: Mapping[str, ApiKey] = field(default_factory=dict)

    def find(self, token: str) -> tuple[ApiKey | None, str]:
        """The live key this token proves, or None and why not (for logs: never the secret)."""
        key_id, secret = split_token(token)
        key = self.keys.get(key_id)
        if key is None:
            return None, f"unknown key {key_id}"
        if not key.proves(secret):
            return None, f"wrong secret for key {key_id}"
        if key.revoked is not None:
            return None, f"key {key_id} was revoked"
        return key, ""


class KeyFile:
    """The key file: read (by the gateway and `imagesearch keys list`) and rewritten whole."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> KeyRing:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyFileError(f"no key file at {self.path}") from None
        except OSError as err:
            raise KeyFileError(f"cannot read the key file {self.path}: {err.strerror}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise KeyFileError(f"{self.path} is not JSON: {err}") from err
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION or not isinstance(data.get("keys"), list):
            raise KeyFileError(f'{self.path}: expected {{"version": {FILE_VERSION}, "keys": [...]}}')
        keys = [ApiKey.from_json(item) for item in data["keys"]]
        return KeyRing({key.id: key for key in keys})

    def load_or_empty(self) -> KeyRing:
        return self.load() if self.path.exists() else KeyRing()

    def save(self, keys: Sequence[ApiKey]) -> None:
        """Atomically, mode 0600: a reader sees the old file or the new one, never half of one."""
        body = json.dumps({"version": FILE_VERSION, "keys": [k.to_json() for k in keys]}, indent=2) + "\n"
        write_private(self.path, body)

    def add(self, key: ApiKey) -> None:
        ring = self.load_or_empty()
        self.save([*ring.keys.values(), key])

    def revoke(self, key_id: str) -> ApiKey:
        ring = self.load()
        key = ring.keys.get(key_id)
        if key is None:
            raise KeyFileError(f"no key {key_id!r} in {self.path}")
        if key.revoked is None:
            key = replace(key, revoked=time.time())
            self.save([key if k.id == key_id else k for k in ring.keys.values()])
        return key
