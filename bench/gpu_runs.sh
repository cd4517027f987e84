# The CIFAR-10 runs of docs/cifar-runs, side by side on one GPU under MPS.
# Usage on the GPU machine, from the repository root, with data/cifar10-jpeg.tar.xz present:
#   bash bench/gpu_runs.sh NAME...     e.g.  bash bench/gpu_runs.sh r20-ppq r20-spq
# Each NAME trains into runs/NAME (log runs/NAME.log, result runs/NAME/result.json). A run whose
# runs/NAME/train.ckpt exists resumes from it; one with runs/NAME/result.json is left alone. An spq run distils from the float phase of the ppq run
# of the same model (runs/<model>-ppq/float.pt) and waits for that file.
# ResNet-20/32: the full schedule (ppq 200 float + 2 x 40 stage + 120 QAT epochs; spq 200 epochs).
# ResNet-56: a shorter one (ppq 80 + 2 x 15 + 50; spq 100); ResNet-110 and VGG-16 shorter still
# (ppq 40 + 2 x 10 + 30; spq 40), to fit the session's GPU budget.
# r20-ppq-t32: ResNet-20 ppq from r20-ppq's float model, distilled from ResNet-32's float model.
# r20-ppq-s1, r20-ppq-s2: r20-ppq with seeds 1 and 2 (the seed's share of the ResNet-20 ppq result).
# r20-ppq-q200: r20-ppq with 200 QAT epochs instead of 120 (run it alone: its wall time is the pipeline's).
# r20-ppq-q200-s1, -s2: its pruning + QAT with seeds 1 and 2 from its float model (--float-init); they
# wait for r20-ppq-q200 to finish, so that its wall time is measured on a GPU of its own.
# r20-ppq-s80: r20-ppq with 80-epoch pruning stages (its prune2 stage was still climbing at epoch 40).
# r20-ppq-s80-s1, -s2: its pruning + QAT with seeds 1 and 2 from its float model; r20-ppq-s120: 120-epoch
# stages from the same float model. They wait for runs/r20-ppq-s80/float.pt, then share the GPU with it.
# r20-ppq-k3, r20-ppq-qtp (-s1, -s2 for seeds 1, 2; k3, k3-s1, qtp, qtp-s1 ran side by side): 3 pruning
# stages (10/20/30%), and QAT distilled from the last pruning stage's model (--qat-teacher pruned);
# 40-epoch stages + 120 QAT epochs from bench/models/r20-ppq-s80-float.pt, which is r20-ppq-s80's float
# model (seed 0; its test accuracy at every evaluation equals r20-ppq-q200's float phase): copied to
# runs/r20-ppq-s80/float.pt, the --float-init runs above start at once, without the 200 float epochs.
# r20-ppq-e, r20-ppq-ew, r20-ppq-ek, r20-ppq-ewk (-s1: seed 1): F0 with the weight average --ema 0.9998
# (the final model; the live one is reported beside it), w: QAT weight decay 1e-4 (--qat-wd), k: 3 stages.
# r20-ppq-w (-s1, -s2): F0 with --qat-wd 1e-4, no average; r20-ppq-w0 (-s1, -s2): --qat-wd 0.
# r20-ppq-c8, r20-ppq-c16 (-s1, -s2): F0 with Cutout 8 or 16 (--cutout) in the pruning stages and QAT;
# r20-ppq-fc8 (-s1, -s2): the whole pipeline (float phase included) with --cutout 8; seed 0 is the ResNet-20 ppq
# row of docs/results.md (r20-ppq, the same without Cutout, is kept as a variant).
# r56-spq-e200-plain: ResNet-56 spq on the paper's full 200-epoch schedule, plain loss.
# NAME-plain (e.g. r32-spq-plain): the paper's loss, no distillation, no teacher (spq runs whose ppq
# float model is not on the machine).
set -u
mkdir -p /tmp/pp/apotflow && for d in sw hw sim; do ln -sfn "$PWD/$d" /tmp/pp/apotflow/$d; done
# Two CPU threads per run: nine runs with torch's default (one thread per core each) thrashed the CPUs.
export PYTHONPATH=/tmp/pp PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on" || echo "MPS unavailable or already on"
python -c "from apotflow.sw.cifar import load_cifar10; s=load_cifar10('data/cifar10-jpeg.tar.xz'); print(s.x_train.shape)"
mkdir -p runs
D="--data data/cifar10-jpeg.tar.xz --warmup-epochs 2 --nesterov --distill 0.9"
FULL_PPQ="--epochs 200 --stage-epochs 40 --qat-epochs 120"
SHORT_PPQ="--epochs 80 --stage-epochs 15 --qat-epochs 50"
SHORTER_PPQ="--epochs 40 --stage-epochs 10 --qat-epochs 30"
F0="--stage-epochs 40 --qat-epochs 120 --float-init bench/models/r20-ppq-s80-float.pt"
for name in "$@"; do
  # a finished run is not started again (it would only redo its final check and overwrite wall_seconds)
  [ -f "runs/$name/result.json" ] && { echo "$name: done (runs/$name/result.json)"; continue; }
  model=${name%%-*}; model=${model/r/resnet}; method=${name#*-}; method=${method%%-*}
  seed=""; case $name in *-s[0-9]) seed=" --seed ${name##*-s}" ;; esac
  case $name in
    r20-ppq|r32-ppq) args="$FULL_PPQ" ;;
    r20-ppq-s1|r20-ppq-s2) args="$FULL_PPQ$seed" ;;
    r20-ppq-q200) args="--epochs 200 --stage-epochs 40 --qat-epochs 200" ;;
    r20-ppq-q200-s1|r20-ppq-q200-s2) args="--stage-epochs 40 --qat-epochs 200$seed --float-init runs/r20-ppq-q200/float.pt" ;;
    r20-ppq-s80) args="--epochs 200 --stage-epochs 80 --qat-epochs 120" ;;
    r20-ppq-s80-s1|r20-ppq-s80-s2) args="--stage-epochs 80 --qat-epochs 120$seed --float-init runs/r20-ppq-s80/float.pt" ;;
    r20-ppq-s120) args="--stage-epochs 120 --qat-epochs 120 --float-init runs/r20-ppq-s80/float.pt" ;;
    r20-ppq-k3|r20-ppq-k3-s[12]) args="$F0 --prune-stages 3$seed" ;;
    r20-ppq-qtp|r20-ppq-qtp-s[12]) args="$F0 --qat-teacher pruned$seed" ;;
    r20-ppq-w|r20-ppq-w-s[12]) args="$F0 --qat-wd 1e-4$seed" ;;
    r20-ppq-w0|r20-ppq-w0-s[12]) args="$F0 --qat-wd 0$seed" ;;
    r20-ppq-c8|r20-ppq-c8-s[12]) args="$F0 --cutout 8$seed" ;;
    r20-ppq-c16|r20-ppq-c16-s[12]) args="$F0 --cutout 16$seed" ;;
    r20-ppq-fc8|r20-ppq-fc8-s[12]) args="$FULL_PPQ --cutout 8$seed" ;;
    r20-ppq-e|r20-ppq-e-s[12]) args="$F0 --ema 0.9998$seed" ;;
    r20-ppq-ew|r20-ppq-ew-s[12]) args="$F0 --ema 0.9998 --qat-wd 1e-4$seed" ;;
    r20-ppq-ek|r20-ppq-ek-s[12]) args="$F0 --ema 0.9998 --prune-stages 3$seed" ;;
    r20-ppq-ewk|r20-ppq-ewk-s[12]) args="$F0 --ema 0.9998 --qat-wd 1e-4 --prune-stages 3$seed" ;;
    r20-ppq-qlr) args="$FULL_PPQ --qat-lr 0.005" ;;
    r20-ppq-t32) args="--stage-epochs 40 --qat-epochs 150 --float-init runs/r20-ppq/float.pt --teacher runs/r32-ppq/float.pt" ;;
    r56-ppq) args="$SHORT_PPQ" ;;
    r110-ppq|vgg16-ppq) args="$SHORTER_PPQ" ;;
    r20-spq|r32-spq|r32-spq-plain) args="--epochs 200" ;;
    r56-spq|r56-spq-plain) args="--epochs 100" ;;
    r110-spq|vgg16-spq|r110-spq-plain|vgg16-spq-plain) args="--epochs 40" ;;
    r56-spq-e200-plain) args="--epochs 200" ;;
    *) echo "unknown run $name"; exit 2 ;;
  esac
  wait_for=":"; d="$D"
  case $name in
    r20-ppq-q200-s*) wait_for="while [ ! -f runs/r20-ppq-q200/result.json ]; do sleep 15; done" ;;
    r20-ppq-s80-s*|r20-ppq-s120) wait_for="while [ ! -f runs/r20-ppq-s80/float.pt ]; do sleep 10; done" ;;
  esac
  if [ "${name%-plain}" != "$name" ]; then
    d="${D/--distill 0.9/--distill 0}"
  elif [ "$method" = spq ]; then
    t="runs/${name%%-*}-ppq/float.pt"; args="$args --teacher $t"
    wait_for="while [ ! -f $t ]; do sleep 15; done"
  fi
  cmd="python -m apotflow.sim.cli train --model $model --method $method $d $args --out runs/$name"
  echo "$name: $cmd"
  setsid nohup bash -c "$wait_for; exec $cmd" >> "runs/$name.log" 2>&1 < /dev/null &
  echo $! > "runs/$name.pid"  # setsid: the run's process group; bench/gpu_session.sh stops it with kill -- -PID
done
