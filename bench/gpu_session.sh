# One bounded call on the GPU machine: restore the saved state of runs, start or resume them, wait,
# stop them, save their state. The GPU machine is given back ~30 s after a call ends (and with it
# runs/), so a run longer than one call lives on in the saved state:
#   bash bench/gpu_session.sh SECONDS NAME...      e.g.  bash bench/gpu_session.sh 540 r20-ppq-q200
# gpu-state/state*.tgz (git-ignored; name them in the call's carry) are unpacked first if present, and each
# run resumes from its runs/NAME/train.ckpt. After SECONDS, or as soon as every NAME has its
# runs/NAME/result.json, the runs are stopped and logs, result.json, train.ckpt, float.pt and model.pt
# are packed into $OUT/state-NAME.tgz, one per run (float.pt into state-NAME-float.tgz; a file coming back from the GPU machine may not exceed
# 16 MiB; six runs' checkpoints together did; a run's state of 15 to 45 MiB comes back in parts,
# state-NAME.tgz.part-aa, ...): copy them to gpu-state/ for the next call. MPS is stopped at
# the end: a warm machine's next call found the old MPS server refusing new clients. A call stopped at its
# time limit never reaches that end: then the next call on the same machine found the old daemon running and
# every CUDA client failing (error 805), so a leftover daemon is stopped first too; start other GPU jobs of
# the call after this script has started the runs, not before. Packing happens only if the script ends
# by itself: give SECONDS at most the call's limit minus about 90 s (restoring, the data check, stopping
# and packing took up to a minute on an H100 machine; a call killed at its limit brings no state back).
# A run whose packed checkpoint and model pass 45 MiB (VGG-16) brings back its log and result.json only,
# and, once finished, its model.pt in parts ($OUT/model-NAME.tgz.part-*, for bench/recheck_run.py here), or
# where that passes 60 MiB its CPU re-check run there as $OUT/recheck-NAME.json (leave it a few minutes of
# the call); such a run cannot resume in a later call, so it must finish on one warm machine (back-to-back
# calls keep runs/). At most 8 files come back from a call: mind the parts of the runs beside it.
# gpu-state/ lives only as long as the checkout (two runs' states were lost with theirs): a run that needs
# more device time than a session has commits what a later session must start from before the session ends:
# its state as bench/gpu-carry/state-NAME.tgz (restored first, unless gpu-state/ holds one; deleted once the
# run has finished) or at least its float.pt (bench/models/NAME-float.pt, then --float-init).
# A resumed run's train_seconds adds up the training time of every call (graph captures included);
# its wall_seconds is the last call's only.
set -u
[ $# -ge 2 ] || { echo "usage: bash bench/gpu_session.sh SECONDS NAME..."; exit 2; }
secs=$1; shift
: "${OUT:?OUT must name the folder whose files come back}"
echo quit | nvidia-cuda-mps-control 2>/dev/null && sleep 2  # a daemon left by a call killed at its limit
for n in "$@"; do  # a run carried over from an earlier session: its state committed (unless gpu-state/ has one)
  f=bench/gpu-carry/state-$n.tgz
  [ -f "$f" ] && ! ls gpu-state/state-$n.tgz* >/dev/null 2>&1 && tar xzf "$f" && echo "restored $f (committed)"; done
for f in gpu-state/state*.tgz; do  # a state in parts (below) is restored from its parts, not an older whole file
  [ -f "$f" ] && ! ls "$f".part-* >/dev/null 2>&1 && tar xzf "$f" && echo "restored $f"; done
for f in $(ls gpu-state/state*.tgz.part-* 2>/dev/null | sed 's/\.part-.*//' | sort -u); do
  cat "$f".part-* | tar xz && echo "restored $f (from its parts)"; done
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
echo quit | nvidia-cuda-mps-control 2>/dev/null
big=$((15 * 1024 * 1024))  # a file back from the GPU machine may have 16 MiB
for n in "$@"; do
  tar czf "$OUT/state-$n.tgz" $(ls -d runs/$n.log runs/$n/result.json runs/$n/train.ckpt runs/$n/model.pt 2>/dev/null)
  size=$(stat -c %s "$OUT/state-$n.tgz")
  if [ "$size" -gt $big ] && [ "$size" -le $((3 * big)) ]; then
    # A ResNet-110 checkpoint past its float phase (a teacher and masks beside the weights) passed 16 MiB:
    # it comes back in parts of 15 MiB, state-NAME.tgz.part-aa, -ab, ..., which the restore above joins
    # (copy them into gpu-state/ and delete the run's older state-NAME.tgz or parts)
    split -b $big "$OUT/state-$n.tgz" "$OUT/state-$n.tgz.part-" && rm "$OUT/state-$n.tgz"
    echo "$n: state in $(ls "$OUT/state-$n.tgz".part-* | wc -l) parts"
  elif [ "$size" -gt $big ]; then
    # A checkpoint too large to come back (VGG-16: 57 MiB of weights, its checkpoint twice that): its log and
    # result only. A finished run's model.pt comes back in parts (at most 4 of 15 MiB: 64 MiB may come back
    # in all) for the CPU re-check (bench/recheck_run.py) here; a larger one is re-checked on this machine's
    # CPU (the integer model against the float64 fake-quant model on every test image, minutes of the call),
    # so that its recheck JSON comes back instead.
    echo "$n: checkpoint too large to return; packing its log and result.json"
    tar czf "$OUT/state-$n.tgz" $(ls -d runs/$n.log runs/$n/result.json 2>/dev/null)
    if [ -f "runs/$n/result.json" ]; then
      tar czf "$OUT/model-$n.tgz" "runs/$n/model.pt" runs/$n/result.json
      if [ "$(stat -c %s "$OUT/model-$n.tgz")" -le $((4 * big)) ]; then
        split -b $big "$OUT/model-$n.tgz" "$OUT/model-$n.tgz.part-" && rm "$OUT/model-$n.tgz"
        echo "$n: model.pt in $(ls "$OUT/model-$n.tgz".part-* | wc -l) parts (cat them | tar xz)"
      else
        rm "$OUT/model-$n.tgz"
        PYTHONPATH=/tmp/pp OMP_NUM_THREADS=12 python bench/recheck_run.py \
          "runs/$n/model.pt" --data data/cifar10-jpeg.tar.xz --out "$OUT/recheck-$n.json"
      fi
    fi
  fi
  # float.pt apart: a ResNet-110 float.pt beside its train.ckpt passes the 16 MiB a file may have
  [ -f "runs/$n/float.pt" ] && [ "$(stat -c %s "runs/$n/float.pt")" -le $big ] && tar czf "$OUT/state-$n-float.tgz" "runs/$n/float.pt"
done
ls -la "$OUT"
