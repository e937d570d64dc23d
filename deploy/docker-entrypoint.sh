#!/bin/sh
# The image's entry point. Roles: `api` (default), `worker`, `migrate`; any other command runs as
# given (e.g. `python worker.py`). With ENVIRONMENT=production every command first passes
# deploy/preflight.py, which refuses placeholder and public sandbox secrets.
set -eu

if [ "${ENVIRONMENT:-development}" = "production" ]; then
    python /app/deploy/preflight.py
fi

case "${1:-api}" in
    api)
        [ "$#" -gt 0 ] && shift
        # Proxy headers (client IP for VNPay's vnp_IpAddr) are trusted only from FORWARDED_ALLOW_IPS.
        exec uvicorn api.app:app_factory --factory --host 0.0.0.0 --port "${API_PORT:-8000}" \
            --proxy-headers --timeout-graceful-shutdown 20 "$@"
        ;;
    worker)
        exec python worker.py
        ;;
    migrate)
        exec python -m infra.migrate
        ;;
    *)
        exec "$@"
        ;;
esac
