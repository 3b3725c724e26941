#!/usr/bin/env bash
# Issue 22 item 6 on one GPU, in one go (docs/hardware.md): every figure lands in $OUT as text.
#
#   OUT=/some/dir bash scripts/gpu_check.sh      # from the repository root, on the GPU machine
#
# 1. scripts/bench_models.py --size paper --device cuda: training tokens/s and peak memory (torch's peak
#    allocation) of every model against the Transformer in the same run (targets: titans >= 0.3x,
#    hope_nl >= 0.2x, peak memory <= 3x).
# 2. scripts/bench_cell.py --device cuda: the seed HOPE cell against cuDNN's GRU (target <= 3x).
# 3. trainer=gpu end to end on one small experiment, float32 and bf16-mixed, each run then read back
#    with load_run and its final row of R evaluated again on the GPU.
#
# The lent GPU machine has torch, Lightning, TensorBoard, pandas, matplotlib and rich, but not
# hydra-core, omegaconf or antlr4, and reaches no network: they are unpacked from wheels in $WHEELS
# (default .whl/, git-ignored; carry it) into a temporary folder on PYTHONPATH, leaving the system's
# Python as it is. Make the wheels beforehand on a machine with network:
#   pip wheel --no-deps -w .whl hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
# The project goes on PYTHONPATH instead of being installed (its pins name torch 2.13 and Python 3.11).
# At most 8 files come back from a lent machine's $OUT, none in deep folders: run directories are
# written beside it and only their results are copied.
set -uo pipefail
OUT=${OUT:-outputs/gpu_check}
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$RUNS/site${PYTHONPATH:+:$PYTHONPATH}
export CI=true                          # no progress bars in the logs

step() {  # step NAME SECONDS COMMAND...: log to $OUT/NAME.txt, record the exit status
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "   exit $?" | tee -a "$OUT/summary.txt"
}

if ! $PY -c "import hydra, omegaconf" 2>/dev/null; then  # into a folder on PYTHONPATH: the system stays as it is
    $PY -m pip install -q --no-deps --no-index --target "$RUNS/site" "$WHEELS"/*.whl >"$OUT/summary.txt" 2>&1
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'Lightning', pl.__version__)"
} >>"$OUT/summary.txt" 2>&1

# Time limits that keep the whole script under 10 minutes (one call on a lent machine).
step bench_models 240 $PY scripts/bench_models.py --size paper --device cuda --repeats 5 --warmup 2
step bench_cell 90 $PY scripts/bench_cell.py --device cuda --lengths 32 128 512

EXPERIMENT=(model=hope_nl model.chunk_size=4 epochs_per_task=2 logger=none)
for precision in 32-true bf16-mixed; do
    run_dir=$RUNS/$precision
    step "train_$precision" 90 $PY -m nested_learning.train trainer=gpu "trainer.precision=$precision" \
        "${EXPERIMENT[@]}" "hydra.run.dir=$run_dir"
    cp "$run_dir/results.json" "$OUT/results_$precision.json" 2>/dev/null
    # The trained model read back and evaluated on the GPU: its final row of R again. Retention evaluation runs
    # outside the training step, so in float32 under both precisions: the same numbers are expected.
    $PY - "$run_dir" >>"$OUT/summary.txt" 2>&1 <<'PYEOF'
import sys
from nested_learning.run.trained import load_run
run = load_run(sys.argv[1])
run.module.to("cuda")
accs, _ = run.evaluate()
again = accs[run.results["eval_split"]][run.results["eval_metric"]]
print("   load_run on cuda: final row", again, "recorded", run.results["accuracy_matrix"][-1],
      "same" if again == run.results["accuracy_matrix"][-1] else "DIFFERENT")
PYEOF
done
rm -rf "$RUNS"
