"""The local stack's keys: `imagesearch up` keeps an admin key in its runtime folder.

`<runtime>/keys.json` is the gateway's key file; `<runtime>/admin.key` holds the token of the
stack's own admin key (mode 0600), which the CLI finds there, so the README's commands work with
authentication on. A token that no longer works (revoked, or the key file replaced) is replaced
by a new admin key at the next `up`.
"""

from __future__ import annotations

from pathlib import Path

from imagesearch.auth.keys import ALL_CATALOGS, KeyFile, KeyFileError, MalformedKey, Scope, new_key
from imagesearch.common.files import write_private

KEYS_FILE = "keys.json"
ADMIN_KEY_FILE = "admin.key"
ADMIN_KEY_NAME = "local admin (imagesearch up)"
REDIS_URL_FILE = "redis.url"  # the stack's Redis, for `imagesearch keys list` (last use); 0600


def ensure_admin_key(runtime_dir: Path) -> tuple[Path, Path, bool]:
    """(key file, admin token file, whether a new admin key was made)."""
    keys, token_file = runtime_dir / KEYS_FILE, runtime_dir / ADMIN_KEY_FILE
    store = KeyFile(keys)
    try:
        token = token_file.read_text(encoding="utf-8").strip()
        if store.load().find(token)[0] is not None:
            return keys, token_file, False
    except (OSError, KeyFileError, MalformedKey):
        pass
    ring = store.load_or_empty() if keys.exists() and _readable(store) else None
    record, token = new_key([Scope.ADMIN], [ALL_CATALOGS], name=ADMIN_KEY_NAME, existing=ring.keys if ring else ())
    store.save([*(ring.keys.values() if ring else ()), record])
    write_private(token_file, token + "\n")
    return keys, token_file, True


def _readable(store: KeyFile) -> bool:
    try:
        store.load()
    except KeyFileError:
        return False  # a broken file is replaced: the stack's keys are its own
    return True
