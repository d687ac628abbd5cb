#!/usr/bin/env bash
# Installs the Debian packages the test suite starts for real, when they are missing:
#   chromium         the browser test of the Airflow UI (driven by Playwright)
#   redis-server     the Celery broker of the distributed-Airflow test
#   postgresql       the metadata database of the distributed-Airflow test
# Called by `make test` (so CI's `.ci/run` installs them on a fresh machine). Does nothing
# when every program is there; needs root (or sudo) otherwise.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(postgresql); fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "+ installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: need root (or sudo) to install ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
