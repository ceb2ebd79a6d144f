#!/usr/bin/env bash
# Started in the background on every worker by worker_start_ray_commands (cluster/*.yaml), after
# `ray start`: stops this worker's Ray once the head's has stopped.
#
# `ray down` runs `ray stop` on the head only: Ray 2.60's launcher has no stop command for workers
# (its schema has none), and the local provider's "terminate" only forgets a node. A worker's raylet
# then ends about a minute later, but its log monitor stays for good. This waits until the head's
# GCS port (HOST:PORT, the argument) has refused or not answered for RAYSTUDIES_HEAD_GONE_S seconds
# in a row (default 60: Ray's own limit for a raylet without its GCS), then runs `ray stop` here.
# One per node: a newer one (the next `ray up`) ends the one before.
set -u
gcs=${1:?usage: stop_with_head.sh HEAD_IP:PORT}
host=${gcs%:*}
port=${gcs##*:}
limit=${RAYSTUDIES_HEAD_GONE_S:-60}
pidfile=~/.ray/stop-with-head.pid

old=$(cat "$pidfile" 2>/dev/null)
if [ -n "$old" ] && [ "$old" != "$$" ] && grep -q stop_with_head "/proc/$old/cmdline" 2>/dev/null; then
    kill "$old" 2>/dev/null
fi
(umask 077 && echo $$ > "$pidfile")

last_seen=$SECONDS
while :; do
    sleep 5
    [ "$(cat "$pidfile" 2>/dev/null)" = "$$" ] || exit 0    # a newer one took over
    if timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null; then
        last_seen=$SECONDS
    elif (( SECONDS - last_seen >= limit )); then
        break
    fi
done
rm -f "$pidfile"
exec ~/raystudies-venv/bin/ray stop
