"""Refuse to start a production container with placeholder or public test secrets.

deploy/docker-entrypoint.sh runs this when ENVIRONMENT=production. Settings already refuses a
short or dev AUTH_JWT_SECRET; this adds what only a deployment knows about: values still as
.env.example ships them ("change-me"), and, with the sandbox off, the public sandbox keys Settings
defaults to (anyone holding them could sign a "paid" notification). Exit 2 = refused.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from pydantic import ValidationError

from infra.settings import Settings

PLACEHOLDER = "change-me"
GATEWAY_SECRETS = (
    "momo_access_key",
    "momo_secret_key",
    "vnpay_hash_secret",
    "payos_api_key",
    "payos_checksum_key",
)
GATEWAY_URLS = ("momo_endpoint", "vnpay_payment_url", "vnpay_api_url", "payos_base_url")


def check(settings: Settings) -> tuple[list[str], list[str]]:
    """(errors that stop the start, warnings that are only printed)."""
    errors: list[str] = []
    warnings: list[str] = []
    if PLACEHOLDER in settings.auth_jwt_secret.lower():
        errors.append("AUTH_JWT_SECRET is still a placeholder")
    if PLACEHOLDER in (urlsplit(settings.database_url or "").password or "").lower():
        errors.append("the DATABASE_URL password (POSTGRES_PASSWORD) is still a placeholder")
    # Settings itself refuses the sandbox in production, and beside a real gateway host.
    if settings.sandbox_enabled:
        # The image has no sandbox (dev tooling): the gateway URLs would point at a /sandbox that 404s.
        warnings.append(
            "SANDBOX_ENABLED=true: this image serves no /sandbox (use `make dev`); /demo mints tokens"
        )
    else:
        for name in GATEWAY_SECRETS:
            value = getattr(settings, name)
            if PLACEHOLDER in value.lower() or value == Settings.model_fields[name].default:
                errors.append(f"{name.upper()} is a placeholder or the public sandbox key")
        for name in GATEWAY_URLS:
            if PLACEHOLDER in str(getattr(settings, name)).lower():
                errors.append(f"{name.upper()} is still a placeholder")
    if not str(settings.public_base_url).startswith("https://"):
        warnings.append("PUBLIC_BASE_URL is not https: gateways expect https IPN/return URLs")
    return errors, warnings


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as err:
        # Messages only: pydantic's full text echoes the (secret) input values.
        for error in err.errors():
            where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            print(f"preflight error: {where}: {error['msg']}", file=sys.stderr)
        print("preflight: refusing to start (see docs/DEPLOY.md, security checklist)", file=sys.stderr)
        return 2
    errors, warnings = check(settings)
    for message in warnings:
        print(f"preflight warning: {message}", file=sys.stderr)
    for message in errors:
        print(f"preflight error: {message}", file=sys.stderr)
    if errors:
        print("preflight: refusing to start (see docs/DEPLOY.md, security checklist)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
