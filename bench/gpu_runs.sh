# The CIFAR-10 runs of docs/cifar-runs, side by side on one GPU under MPS.
# Usage on the GPU machine, from the repository root, with data/cifar10-jpeg.tar.xz present:
#   bash bench/gpu_runs.sh NAME...     e.g.  bash bench/gpu_runs.sh r20-ppq-fc8 r20-spq
# NAME is a recipe: configs/NAME.toml (a row of docs/results.md), configs/variants/NAME.toml (a variant)
# or configs/next/NAME.toml (a run not finished yet); the first two are written by bench/recipes.py from
# the committed run JSONs, so a run is started with exactly the command that made its result. Each NAME
# trains into runs/NAME (log runs/NAME.log, result runs/NAME/result.json) with
# `apotflow train --config FILE`. A run whose runs/NAME/train.ckpt exists resumes from it; one with
# runs/NAME/result.json is left alone. A run whose teacher or float-init is another run's file
# (runs/...) waits for that file, so a spq run can start beside the ppq run whose float model it distils.
set -u
mkdir -p /tmp/pp/apotflow && for d in sw hw sim; do ln -sfn "$PWD/$d" /tmp/pp/apotflow/$d; done
# Two CPU threads per run: nine runs with torch's default (one thread per core each) thrashed the CPUs.
export PYTHONPATH=/tmp/pp PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on" || echo "MPS unavailable or already on"
python -c "from apotflow.sw.cifar import load_cifar10; s=load_cifar10('data/cifar10-jpeg.tar.xz'); print(s.x_train.shape)"
mkdir -p runs
for name in "$@"; do
  # a finished run is not started again (it would only redo its final check and overwrite wall_seconds)
  [ -f "runs/$name/result.json" ] && { echo "$name: done (runs/$name/result.json)"; continue; }
  recipe=""; for f in configs/$name.toml configs/variants/$name.toml configs/next/$name.toml; do
    [ -f "$f" ] && { recipe=$f; break; }; done
  [ -n "$recipe" ] || { echo "unknown run $name: no configs/{,variants/,next/}$name.toml"; exit 2; }
  waits=$(python - "$recipe" "$name" <<'PY'
import sys, tomllib
r = tomllib.load(open(sys.argv[1], "rb"))
if r.get("out") != f"runs/{sys.argv[2]}":
    sys.exit(f"{sys.argv[1]}: out is {r.get('out')!r}, not runs/{sys.argv[2]}")
print(" ".join(v for k, v in r.items() if k in ("teacher", "float-init") and v.startswith("runs/")))
PY
) || exit 2
  wait_for=":"; for w in $waits; do wait_for="$wait_for; while [ ! -f $w ]; do sleep 15; done"; done
  cmd="python -m apotflow.sim.cli train --config $recipe"
  echo "$name: $cmd"
  setsid nohup bash -c "$wait_for; exec $cmd" >> "runs/$name.log" 2>&1 < /dev/null &
  echo $! > "runs/$name.pid"  # setsid: the run's process group; bench/gpu_session.sh stops it with kill -- -PID
done
