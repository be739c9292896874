#!/usr/bin/env bash
# Records the book's last chapter: a million connections on this machine, the report
# and the picture. Run it alone on a quiet machine: no builds, no browser, nothing else.
#
#   stage5-bench/record-million.sh                       # 1,000,000 connections
#   CONNECTIONS=100000 stage5-bench/record-million.sh    # a smaller rehearsal
#
# It builds first, then (as root) drops the page cache so that MemAvailable measures the
# run and not the cache, then runs the million and the floor after it. It writes
#
#   book/src/generated/million-run.txt    the plan, the floor's report, the run's report
#   book/src/generated/million.svg        the picture of the run
#   target/million-progress.log           the progress lines, once a second
#
# and exits with the run's status (0: every answer verified, all waiting at once).
set -uo pipefail
cd "$(dirname "$0")/.."

connections=${CONNECTIONS:-1000000}
# The delay must outlast sending every request, or the first answers leave before the
# last requests arrive and not all of them wait at once: two cores send about 80,000 a
# second here (100,000 in 1.24 s), so a million take some 12 s; 30 s leaves room. The run
# says so, with a delay to use, when it was too short.
delay_ms=${DELAY_MS:-30000}
out=book/src/generated

cargo build --release -p stage5-bench --bin million || exit 1

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v load="$load" 'BEGIN { exit !(load > 0.5) }'; then
  echo "warning: the load average is $load: the machine is not quiet, the figures will show it" >&2
fi
if [ "$(id -u)" = 0 ]; then
  sync
  echo 1 > /proc/sys/vm/drop_caches
else
  echo "warning: not root, so the page cache stays: MemAvailable will move with it" >&2
fi
# Sockets of an earlier run in TIME_WAIT hold kernel memory for up to a minute: wait them
# out, so that the run's "before" is a machine at rest.
for _ in $(seq 70); do
  tw=$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat)
  [ "${tw:-0}" -lt 1000 ] && break
  sleep 1
done
sleep 5 # let the kernel settle after the build and the drop

echo "recording $connections connections (progress in target/million-progress.log)" >&2
target/release/million --connections "$connections" --delay-ms "$delay_ms" \
  --compare-floor --svg "$out/million.svg" \
  > "$out/million-run.txt" 2> target/million-progress.log
status=$?
tail -n 3 target/million-progress.log >&2
echo "exit status $status; wrote $out/million-run.txt and $out/million.svg" >&2
exit $status
