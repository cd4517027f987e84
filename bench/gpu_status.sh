# Progress of the runs started by bench/gpu_runs.sh (on the GPU machine): the last line of each log.
#   bash bench/gpu_status.sh            one line per run
#   bash bench/gpu_status.sh --collect DIR   also copy every finished run's result.json and log to DIR
set -u
for log in runs/*.log; do
  name=$(basename "$log" .log)
  last=$(tr '\r' '\n' < "$log" | grep -v '^\s*$' | tail -1 | cut -c1-150)
  done_=" "; [ -f "runs/$name/result.json" ] && done_="done"
  echo "$done_ $name: $last"
done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
if [ "${1:-}" = --collect ]; then
  mkdir -p "$2"
  tar czf "$2/runs.tgz" runs/*.log $(ls runs/*/result.json 2>/dev/null) 2>/dev/null && ls -la "$2"
fi
