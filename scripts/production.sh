#!/usr/bin/env bash
# Run autotrain in production on one host: migrations once, then the app and a worker.
#
#   DATABASE_URL=postgresql+psycopg://autotrain@db/autotrain \
#   REDIS_URL=redis://cache:6379/0 CHROMA_URL=http://vectors:8000 \
#   AUTOTRAIN_API_KEY=... AUTOTRAIN_SECRET_KEY=... scripts/production.sh
#
# 1. checks that the shared engines are configured (PostgreSQL, Redis, a Chroma server) and
#    that an admin key is set (otherwise `serve` would print a generated one in the logs),
# 2. runs `autotrain migrate` once, before any process serves (two processes migrating at
#    the same moment would race),
# 3. hands over (exec) to honcho, which starts the Procfile's `app` and `worker`, prints
#    their output, and on SIGTERM or Ctrl-C (or when either process exits) stops both:
#    SIGTERM, then SIGKILL after 5 seconds. Its exit status is 143 after a SIGTERM, 130
#    after Ctrl-C, or the status of the process that stopped first.
#
# AUTOTRAIN_HOST / AUTOTRAIN_PORT (0.0.0.0 / 8000) choose where the app listens;
# AUTOTRAIN_PROCFILE another Procfile (e.g. one with two app processes). The `autotrain` and
# `honcho` commands are taken from PATH, or from this checkout's .venv when it has them.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROCFILE="${AUTOTRAIN_PROCFILE:-$REPO_ROOT/Procfile}"

die() { printf 'production.sh: %s\n' "$*" >&2; exit 2; }

if ! command -v autotrain >/dev/null 2>&1 && [[ -x "$REPO_ROOT/.venv/bin/autotrain" ]]; then
    PATH="$REPO_ROOT/.venv/bin:$PATH"
fi
command -v autotrain >/dev/null 2>&1 || die "autotrain is not on PATH (pip install the project)"
command -v honcho >/dev/null 2>&1 || die "honcho is not on PATH (pip install the project)"

missing=()
for name in DATABASE_URL REDIS_URL CHROMA_URL AUTOTRAIN_API_KEY; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
done
# The values are never printed: the URLs may carry passwords.
((${#missing[@]} == 0)) || die "set ${missing[*]} (see the README's \"Deploy\")"
[[ -f "$PROCFILE" ]] || die "no Procfile at $PROCFILE"

autotrain migrate
# exec: honcho becomes this process, so a service manager's SIGTERM reaches it directly.
exec honcho start --no-colour --procfile "$PROCFILE" --app-root "$PWD"
