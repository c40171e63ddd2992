#!/usr/bin/env bash
# PostgreSQL and Redis from the Debian packages, and prefect-redis, for the production Prefect
# setup (docs/production.md) and its test (tests/test_production_setup.py). Nothing is started
# or enabled here: the test starts its own throw-away instances on loopback.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
python -m pip install -q "prefect-redis>=0.3,<0.4"  # = the "production" extra of pyproject.toml
echo "install_services: postgresql $(ls /usr/lib/postgresql 2>/dev/null | tr '\n' ' ')and $(redis-server --version | cut -d' ' -f3) ready"
