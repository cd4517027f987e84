# One bounded call on the GPU machine: restore the saved state of runs, start or resume them, wait,
# stop them, save their state. The GPU machine is given back ~30 s after a call ends (and with it
# runs/), so a run longer than one call lives on in the saved state:
#   bash bench/gpu_session.sh SECONDS NAME...      e.g.  bash bench/gpu_session.sh 540 r20-ppq-q200
# gpu-state/state.tgz (git-ignored; name it in the call's carry) is unpacked first if present, and each
# run resumes from its runs/NAME/train.ckpt. After SECONDS, or as soon as every NAME has its
# runs/NAME/result.json, the runs are stopped and logs, result.json, train.ckpt, float.pt and model.pt
# are packed into $OUT/state.tgz: copy that to gpu-state/state.tgz for the next call.
# A resumed run's train_seconds adds up the training time of every call (graph captures included);
# its wall_seconds is the last call's only.
set -u
[ $# -ge 2 ] || { echo "usage: bash bench/gpu_session.sh SECONDS NAME..."; exit 2; }
secs=$1; shift
: "${OUT:?OUT must name the folder whose files come back}"
[ -f gpu-state/state.tgz ] && tar xzf gpu-state/state.tgz && echo "restored gpu-state/state.tgz"
bash bench/gpu_runs.sh "$@"
end=$((SECONDS + secs))
while [ $SECONDS -lt $end ]; do
  left=0; for n in "$@"; do [ -f "runs/$n/result.json" ] || left=1; done
  [ $left = 0 ] && break
  sleep 5
done
for n in "$@"; do [ -f "runs/$n.pid" ] && kill -- "-$(cat "runs/$n.pid")" 2>/dev/null; done
sleep 2
bash bench/gpu_status.sh
tar czf "$OUT/state.tgz" $(ls -d runs/*.log runs/*/result.json runs/*/train.ckpt runs/*/float.pt runs/*/model.pt 2>/dev/null)
ls -la "$OUT"
