# The CIFAR-10 runs of docs/cifar-runs (H100): three trainings side by side under MPS.
# Usage on the GPU machine, from the repository root, with data/cifar10-jpeg.tar.xz present:
#   bash bench/gpu_runs.sh            (then poll runs/*.log; results in runs/*/result.json)
mkdir -p /tmp/pp/apotflow && for d in sw hw sim; do ln -sfn $PWD/$d /tmp/pp/apotflow/$d; done
export PYTHONPATH=/tmp/pp PYTHONUNBUFFERED=1
nvidia-cuda-mps-control -d && echo "MPS on" || echo "MPS unavailable"
python -c "from apotflow.sw.cifar import load_cifar10; s=load_cifar10('data/cifar10-jpeg.tar.xz'); print(s.x_train.shape)"
mkdir -p runs
D="--data data/cifar10-jpeg.tar.xz --warmup-epochs 2 --nesterov"
setsid nohup python -m apotflow.sim.cli train --model resnet20 --method ppq $D --epochs 200 --stage-epochs 40 --qat-epochs 120 --out runs/r20-ppq > runs/r20-ppq.log 2>&1 < /dev/null &
setsid nohup python -m apotflow.sim.cli train --model resnet20 --method spq $D --epochs 300 --out runs/r20-spq > runs/r20-spq.log 2>&1 < /dev/null &
setsid nohup python -m apotflow.sim.cli train --model resnet32 --method ppq $D --epochs 200 --stage-epochs 40 --qat-epochs 120 --out runs/r32-ppq > runs/r32-ppq.log 2>&1 < /dev/null &
