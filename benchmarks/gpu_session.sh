#!/usr/bin/env bash
# One GPU session's work, in stages that each fit one device call (10 min, 8 files back).
#
# Here, once (the device machine has no network; it lacks torchjd and the QP solvers
# behind two baselines, which travel as wheels; scs is left out: cvxpy needs only its
# default solvers for Nash-MTL and CAGrad):
#   bash benchmarks/gpu_session.sh wheels            # -> .whl/ (ignored by git, ~25 MB)
# Then, with the device tool, each stage as one call with carry [".whl"]:
#   bash benchmarks/gpu_session.sh check             # nvidia-smi + tests/test_devices.py on CUDA
#   bash benchmarks/gpu_session.sh bench             # residual.py, mtl.py, metacolloc.py on CUDA -> $OUT/*.json
#   bash benchmarks/gpu_session.sh reproduce ID...   # full-size validation entries -> $OUT/ID.tar.gz
#       (JOBS=N runs at once through torchrun, LIMIT seconds per entry; resumable: see the stage below)
# Budget (15 min of device time a session at present, the machine's start included):
# check ~2 min, bench ~6 min; the full-size entries then go over later sessions
# (each reproduce call resumes where the last one stopped).
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-check}
shift || true
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1

if [ "$stage" = wheels ]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
        torchjd==0.18.0 quadprog==0.1.14 qpsolvers==4.13.0 cvxpy==1.9.3 clarabel==0.11.1 ecos==2.0.14 \
        highspy osqp qdldl sparsediffpy cffi pycparser
    exit $?
fi

if [ -d .whl ] && ! python3 -c "import torchjd" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}

case "$stage" in
    check)
        nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
        python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/nvidia-smi.txt"
        python3 -m pytest -q -rs tests/test_devices.py 2>&1 | tee "$OUT/test_devices.log"
        ;;
    bench)
        python3 benchmarks/residual.py --device "$DEVICE" --forward --compile --json "$OUT/residual.json" 2>&1 | tee "$OUT/residual.log"
        python3 benchmarks/residual.py --device "$DEVICE" --equation bgk --json "$OUT/residual_bgk.json" 2>&1 | tee -a "$OUT/residual.log"
        python3 benchmarks/mtl.py --device "$DEVICE" --json "$OUT/mtl.json" 2>&1 | tee "$OUT/mtl.log"
        python3 benchmarks/metacolloc.py --device "$DEVICE" --json "$OUT/metacolloc.json" 2>&1 | tee "$OUT/metacolloc.log"
        ;;
    reproduce)
        # Resumable over calls and sessions: each entry runs into runs/gpu_state/ID with
        # --resume, cut at LIMIT seconds by SIGINT (each training saves its checkpoint), and
        # comes back as $OUT/ID.tar.gz (checkpoints of finished methods left out). Extract it
        # here with  tar -xzf ID.tar.gz -C runs/gpu_state --exclude='*.png'  and carry
        # runs/gpu_state with the next call to go on. JOBS > 1 trains that many runs of a
        # comparison entry at once on the one GPU (torchrun; small networks leave it idle).
        JOBS=${JOBS:-1}; LIMIT=${LIMIT:-540}
        for id in "$@"; do
            state=runs/gpu_state/$id
            mkdir -p "$state"
            common=(--device "$DEVICE" --out "$state" --resume --set solver.training.checkpoint_every=250 ${ARGS:-})
            methods=$(python3 -c "
from sciml.validation import load_entry
e = load_entry('$id')
quick = '--quick' in '${ARGS:-}'.split() and e.quick is not None and e.quick.methods
print(' '.join(e.quick.methods if quick else e.methods))")
            if [ -n "$methods" ] && [ "$JOBS" -gt 1 ]; then
                # torchrun deals the entry's runs out to JOBS processes sharing the GPU (gloo:
                # they only meet at barriers); SIGINT reaches every process, each saves its run
                timeout -s INT -k 90 "$LIMIT" python3 -m torch.distributed.run --standalone \
                    --nproc_per_node "$JOBS" -m sciml reproduce "$id" --quiet "${common[@]}" > "$state/torchrun.log" 2>&1
                for _ in $(seq 60); do pgrep -f "sciml reproduce $id" > /dev/null || break; sleep 1; done
                # the table, also when the time limit cut the runs short
                python3 -m sciml reproduce "$id" --methods "" --quiet "${common[@]}" 2>&1 | tee "$state/reproduce.log"
            else
                timeout -s INT -k 90 "$LIMIT" python3 -m sciml reproduce "$id" "${common[@]}" 2>&1 | tee "$state/reproduce.log"
            fi
            # a finished run (method, or method/seed<k> in an entry over seeds) has its result.h5
            finished=$(cd runs/gpu_state && find "$id" -name result.h5 | while read -r f; do echo "--exclude=$(dirname "$f")/train/checkpoint.pt"; done)
            tar $finished -czf "$OUT/$id.tar.gz" -C runs/gpu_state "$id"
        done
        ;;
    *)
        echo "unknown stage '$stage': use wheels, check, bench or reproduce ID..." >&2
        exit 2
        ;;
esac
