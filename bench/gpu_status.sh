# Progress of the runs started by bench/gpu_runs.sh (on the GPU machine): the last line of each log.
#   bash bench/gpu_status.sh            one line per run
#   bash bench/gpu_status.sh --collect DIR   also pack every run's log, result.json and (ResNet-20/32 only,
#                                            about 1 MB each) model.pt / float.pt into DIR/runs.tgz, so a
#                                            later session can start from them (--float-init, --teacher)
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
  tar czf "$2/runs.tgz" runs/*.log $(ls runs/*/result.json runs/r20-*/*.pt runs/r32-*/*.pt 2>/dev/null | grep -v train.ckpt) \
    && ls -la "$2"
fi
