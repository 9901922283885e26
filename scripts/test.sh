#!/usr/bin/env bash
# Set up and run the whole autotrain test suite on a fresh (Debian) machine.
#
#   scripts/test.sh [pytest args...]
#
# 1. apt-installs PostgreSQL / Redis if they are missing,
# 2. creates .venv (if missing) and installs the project with its `dev` extra,
# 3. runs `ruff check .`,
# 4. starts throwaway PostgreSQL, Redis and Chroma servers on free loopback
#    ports inside a temp dir and exports TEST_DATABASE_URL, TEST_REDIS_URL and
#    TEST_CHROMA_URL,
# 5. runs pytest (arguments are passed through) and exits with its status.
# The servers and the temp dir are always removed on exit, failure or Ctrl-C.
#
# AUTOTRAIN_TEST_NO_SERVICES=1 skips installing/starting the servers; tests
# that need them are then skipped (unless TEST_*_URL are already set in the
# environment, which are left untouched in that mode).
# AUTOTRAIN_TEST_NO_LINT=1 skips `ruff check` (handy while iterating locally).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

export ANONYMIZED_TELEMETRY=False
NO_SERVICES="${AUTOTRAIN_TEST_NO_SERVICES:-0}"
NO_LINT="${AUTOTRAIN_TEST_NO_LINT:-0}"
VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '[test.sh] %s\n' "$*"; }
die() { printf '[test.sh] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup ---
TMP_DIR=""
PG_DATA=""
PG_BIN=""
REDIS_PIDFILE=""
CHROMA_PID=""

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# initdb/pg_ctl refuse to run as root: run them as the postgres user then.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Wait (up to $2 tenths of a second) for pid $1 to exit.
# shellcheck disable=SC2317  # only called from the EXIT trap
wait_pid_gone() {
    local pid=$1 tries=$2
    while ((tries-- > 0)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$?
    trap '' INT TERM HUP # finish cleaning up even on a second Ctrl-C
    set +e
    if [[ -n $CHROMA_PID ]] && kill -0 "$CHROMA_PID" 2>/dev/null; then
        log "stopping Chroma"
        kill -TERM "$CHROMA_PID" 2>/dev/null
        if ! wait_pid_gone "$CHROMA_PID" 100; then
            kill -KILL "$CHROMA_PID" 2>/dev/null
        fi
        wait "$CHROMA_PID" 2>/dev/null
    fi
    if [[ -n $REDIS_PIDFILE && -s $REDIS_PIDFILE ]]; then
        local redis_pid
        redis_pid="$(cat "$REDIS_PIDFILE")"
        if kill -0 "$redis_pid" 2>/dev/null; then
            log "stopping Redis"
            kill -TERM "$redis_pid" 2>/dev/null
            if ! wait_pid_gone "$redis_pid" 100; then
                kill -KILL "$redis_pid" 2>/dev/null
            fi
        fi
    fi
    if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
        log "stopping PostgreSQL"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null
    fi
    if [[ -n $TMP_DIR && -d $TMP_DIR ]]; then
        rm -rf "$TMP_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/autotrain-test.XXXXXX")"
chmod 711 "$TMP_DIR" # the postgres user must be able to reach $TMP_DIR/pg

# ----------------------------------------------------- 1. system packages ---
find_pg_bin() {
    local dir best=""
    # Debian layout: /usr/lib/postgresql/<major>/bin; take the newest major.
    for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n1) == "$dir" ]]; then
                best=$dir
            fi
        fi
    done
    if [[ -z $best ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        best="$(dirname "$(command -v initdb)")"
    fi
    printf '%s' "$best"
}

missing=()
if [[ $NO_SERVICES != 1 ]]; then
    [[ -n $(find_pg_bin) ]] || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
fi
# Debian's own python3 needs python3-venv for `python3 -m venv`.
if [[ ! -x $PY ]] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    log "installing ${missing[*]} via apt"
    t0=$SECONDS
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "apt done in $((SECONDS - t0))s"
fi

# ------------------------------------------------------------ 2. the venv ---
t0=$SECONDS
if [[ ! -x $PY ]]; then
    log "creating .venv"
    python3 -m venv "$VENV"
fi
log "installing the project (pip install -e '.[dev]')"
pip_log="$TMP_DIR/pip.log"
if ! "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]' >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    die "pip install -e '.[dev]' failed"
fi
log "venv ready in $((SECONDS - t0))s"

# ---------------------------------------------------------------- 3. lint ---
if [[ $NO_LINT == 1 ]]; then
    log "AUTOTRAIN_TEST_NO_LINT=1: skipping ruff check"
else
    log "ruff check ."
    "$PY" -m ruff check .
fi

# ------------------------------------------------------------ 4. services ---
if [[ $NO_SERVICES == 1 ]]; then
    log "AUTOTRAIN_TEST_NO_SERVICES=1: not starting PostgreSQL, Redis, Chroma"
else
    t_services=$SECONDS

    # Three distinct free loopback ports, chosen by the kernel.
    ports="$("$PY" - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)"
    read -r PGPORT REDISPORT CHROMAPORT <<<"$ports"
    [[ -n ${CHROMAPORT:-} ]] || die "could not pick free ports"

    # --- PostgreSQL
    PG_BIN="$(find_pg_bin)"
    [[ -n $PG_BIN ]] || die "PostgreSQL binaries (initdb, pg_ctl) not found"
    log "starting PostgreSQL on 127.0.0.1:$PGPORT ($PG_BIN)"
    pg_dir="$TMP_DIR/pg"
    mkdir "$pg_dir"
    if [[ $EUID -eq 0 ]]; then
        chown postgres:postgres "$pg_dir"
    fi
    PG_DATA="$pg_dir/data"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$TMP_DIR/initdb.log" 2>&1 ||
        { cat "$TMP_DIR/initdb.log" >&2; die "initdb failed"; }
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$pg_dir/postgres.log" -w -t 60 \
        -o "-p $PGPORT -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
        cat "$pg_dir/postgres.log" >&2 || true
        die "PostgreSQL did not start"
    fi
    as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres autotrain_test
    export TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/autotrain_test"

    # --- Redis
    log "starting Redis on 127.0.0.1:$REDISPORT"
    REDIS_PIDFILE="$TMP_DIR/redis.pid"
    redis-server --port "$REDISPORT" --bind 127.0.0.1 --daemonize yes --save '' \
        --appendonly no --dir "$TMP_DIR" --pidfile "$REDIS_PIDFILE" \
        --logfile "$TMP_DIR/redis.log"
    tries=100
    until redis-cli -h 127.0.0.1 -p "$REDISPORT" ping 2>/dev/null | grep -q PONG; do
        if ((tries-- <= 0)); then
            cat "$TMP_DIR/redis.log" >&2 || true
            die "Redis did not start"
        fi
        sleep 0.1
    done
    export TEST_REDIS_URL="redis://127.0.0.1:$REDISPORT/0"

    # --- Chroma
    log "starting Chroma on 127.0.0.1:$CHROMAPORT"
    chroma_log="$TMP_DIR/chroma.log"
    "$VENV/bin/chroma" run --host 127.0.0.1 --port "$CHROMAPORT" --path "$TMP_DIR/chroma" \
        >"$chroma_log" 2>&1 </dev/null &
    CHROMA_PID=$!
    heartbeat="http://127.0.0.1:$CHROMAPORT/api/v2/heartbeat"
    deadline=$((SECONDS + 60))
    until "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$heartbeat" 2>/dev/null; do
        if ! kill -0 "$CHROMA_PID" 2>/dev/null || ((SECONDS >= deadline)); then
            cat "$chroma_log" >&2 || true
            die "Chroma did not answer $heartbeat"
        fi
        sleep 0.25
    done
    export TEST_CHROMA_URL="http://127.0.0.1:$CHROMAPORT"

    log "services up in $((SECONDS - t_services))s"
fi

# --------------------------------------------------------------- 5. tests ---
log "pytest $*"
set +e
"$PY" -m pytest "$@"
status=$?
set -e
log "pytest exited with $status"
exit "$status"
