#!/usr/bin/env bash
# Set up and run the whole autotrain test suite on a fresh (Debian) machine.
#
#   scripts/test.sh [pytest args...]
#
# 1. apt-installs PostgreSQL / Redis / Dovecot (IMAP) if they are missing,
# 2. creates .venv (if missing) and installs the project with its `dev` extra,
# 3. runs `ruff check .`,
# 4. starts throwaway PostgreSQL, Redis, Chroma and Dovecot servers on free
#    loopback ports inside a temp dir and exports TEST_DATABASE_URL,
#    TEST_REDIS_URL, TEST_CHROMA_URL and TEST_IMAP_* (see start_dovecot),
# 5. runs pytest (arguments are passed through) and exits with its status.
# The servers and the temp dir are always removed on exit, failure or Ctrl-C.
#
# Sourcing this file (`source scripts/test.sh`) stops after its settings and
# functions, so one service can be tried alone, e.g.
#   bash -c 'source scripts/test.sh; d=$(mktemp -d); chmod 711 "$d";
#            start_dovecot 14300 14993 "$d/dovecot"; env | grep TEST_IMAP;
#            stop_dovecot; rm -rf "$d"'
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
DOVECOT_PIDFILE=""

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

# Stop server $1 whose pid is in file $2: TERM, up to $3 tenths of a second to
# exit, then KILL.
# shellcheck disable=SC2317  # only called from the EXIT trap
stop_pidfile() {
    local name=$1 pidfile=$2 tries=$3 pid
    [[ -n $pidfile && -s $pidfile ]] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name"
        kill -TERM "$pid" 2>/dev/null
        if ! wait_pid_gone "$pid" "$tries"; then
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
}

# Dovecot refuses to run mail processes as root and chroots its login processes
# when started as root; run the whole server as one unprivileged account instead
# (Dovecot's "rootless" mode): the package's `dovecot` user when we are root,
# ourselves otherwise. Everything it writes lives under the directory we give it.
dovecot_user() {
    if [[ $EUID -eq 0 ]]; then
        printf 'dovecot'
    else
        id -un
    fi
}

as_dovecot() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$(dovecot_user)" -- "$@")
    else
        "$@"
    fi
}

# Start a throwaway Dovecot IMAP server on 127.0.0.1 with one user and an empty
# maildir, all under directory $3 (its parent must be traversable by the
# dovecot user), and export TEST_IMAP_HOST/PORT/USER/PASSWORD (plain IMAP on
# port $1, STARTTLS offered there too) and TEST_IMAP_TLS_PORT/TEST_IMAP_CA_FILE
# (implicit TLS on port $2, with a self-signed certificate for 127.0.0.1 and
# localhost): tests deliver with IMAP APPEND, so no LDA or MTA is needed.
start_dovecot() {
    local port=$1 tls_port=$2 dir=$3
    local user uid gid group password
    user="$(dovecot_user)"
    uid="$(id -u "$user")"
    gid="$(id -g "$user")"
    group="$(id -gn "$user")"
    password="$(openssl rand -hex 12)"
    mkdir -p "$dir/run" "$dir/state" "$dir/home"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=localhost' \
        -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 ||
        { cat "$dir/openssl.log" >&2; die "openssl could not make the IMAP test certificate"; }
    # Dovecot reads this file on every login; the {PLAIN} scheme keeps it obvious.
    printf 'autotrain:{PLAIN}%s\n' "$password" >"$dir/users"
    cat >"$dir/dovecot.conf" <<EOF
# Throwaway test server written by scripts/test.sh; nothing here is for production.
instance_name = autotrain-test-$port
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong-password test should not wait the default 2 s.
auth_failure_delay = 0
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
first_valid_uid = $uid
first_valid_gid = $gid
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}
# chroot needs root; without it the login processes run beside the rest.
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $tls_port
  }
}
service anvil {
  chroot =
}
EOF
    if [[ $EUID -eq 0 ]]; then
        chown -R "$user:$group" "$dir"
    fi
    DOVECOT_PIDFILE="$dir/run/master.pid"
    if ! as_dovecot dovecot -c "$dir/dovecot.conf"; then
        cat "$dir/dovecot.log" >&2 || true
        die "Dovecot did not start"
    fi
    local tries=100
    until "$PY" - "$port" 2>/dev/null <<'EOF'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    assert s.recv(200).startswith(b"* OK")
EOF
    do
        if ((tries-- <= 0)); then
            cat "$dir/dovecot.log" >&2 || true
            die "Dovecot did not greet on 127.0.0.1:$port"
        fi
        sleep 0.1
    done
    export TEST_IMAP_HOST=127.0.0.1
    export TEST_IMAP_PORT=$port
    export TEST_IMAP_TLS_PORT=$tls_port
    export TEST_IMAP_CA_FILE="$dir/cert.pem"
    export TEST_IMAP_USER=autotrain
    export TEST_IMAP_PASSWORD=$password
}

# shellcheck disable=SC2317  # called from the EXIT trap
stop_dovecot() {
    # Its master takes a few seconds to collect its children.
    stop_pidfile Dovecot "$DOVECOT_PIDFILE" 150
    DOVECOT_PIDFILE=""
}

# Sourced (not run): stop here with the functions defined.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    return 0
fi

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$?
    trap '' INT TERM HUP # finish cleaning up even on a second Ctrl-C
    set +e
    stop_dovecot
    if [[ -n $CHROMA_PID ]] && kill -0 "$CHROMA_PID" 2>/dev/null; then
        log "stopping Chroma"
        kill -TERM "$CHROMA_PID" 2>/dev/null
        if ! wait_pid_gone "$CHROMA_PID" 100; then
            kill -KILL "$CHROMA_PID" 2>/dev/null
        fi
        wait "$CHROMA_PID" 2>/dev/null
    fi
    stop_pidfile Redis "$REDIS_PIDFILE" 100
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
    command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
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
    log "AUTOTRAIN_TEST_NO_SERVICES=1: not starting PostgreSQL, Redis, Chroma, Dovecot"
else
    t_services=$SECONDS

    # Five distinct free loopback ports, chosen by the kernel.
    ports="$("$PY" - <<'EOF'
import socket
socks = []
for _ in range(5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)"
    read -r PGPORT REDISPORT CHROMAPORT IMAPPORT IMAPSPORT <<<"$ports"
    [[ -n ${IMAPSPORT:-} ]] || die "could not pick free ports"

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

    # --- Dovecot (IMAP)
    log "starting Dovecot on 127.0.0.1:$IMAPPORT (TLS on $IMAPSPORT)"
    start_dovecot "$IMAPPORT" "$IMAPSPORT" "$TMP_DIR/dovecot"

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
