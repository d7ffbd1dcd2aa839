"""Who may call the public API: API keys, their scopes and catalogs, per-key rates (pure Python).

The gateway enforces them (`imagesearch_gateway.auth`); `imagesearch keys` and `imagesearch up`
write the key file they live in (docs/security.md).
"""
