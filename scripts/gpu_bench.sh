#!/usr/bin/env bash
# Ours against PyTorch on one GPU, in one call of about BUDGET (240) seconds:
# training it/s at WIDTHS (32,64), batch 64, ours (bf16, data on the device)
# and PyTorch's variants (eager float32, autocast bf16 + channels_last,
# torch.compile'd nets); completion of CIMAGES (64) images x CSTEPS (1000)
# Adam steps at CWIDTHS (32), ours (bf16, one lax.scan) and PyTorch's (bf16
# autocast); the bf16 matmul peak measured here, FLOPs per iteration from
# XLA's cost analysis and their fraction of that peak; a jax.profiler trace
# of TRACE_STEPS (20) training steps at the first width and its top ops.
# Each part runs in its own process (one framework at a time, JAX without
# preallocation), under its own time limit; a part that fails or runs out
# of time is a line in the log, and the table comes last either way.
#
#   scripts/gpu_bench.sh prepare   # here: the two pure-Python wheels the
#                                  # GPU image lacks, into $WHEELS (.whl)
#   scripts/gpu_bench.sh           # on the GPU host
#   WIDTHS=4 CWIDTHS=4 RES=32 BATCH=4 N_CRITIC=1 STEPS=1 CSTEPS=3 CIMAGES=2 \
#     TRACE_STEPS=2 MATMUL=128 DATA_IMAGES=16 COMPILE=0 BUDGET=1500 \
#     T_JAX_TRAIN=900 RESULTS=/tmp/bench \
#     scripts/gpu_bench.sh         # dry run on a CPU (tests/test_gpu_bench.py)
#
# Output in $RESULTS (default $OUT, else gpu_bench_results), 5 files:
# rows.jsonl (every measurement), table.md (the table), trace.tar.gz (the
# trace, <= 15 MiB), top_ops.txt (bench/trace_top_ops.py of it), log.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  for package in ml_collections dm-pix; do
    version=$(python3 -c "import importlib.metadata as m; print(m.version('$package'))") &&
    python3 -m pip download -q --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d "${WHEELS:-.whl}" "$package==$version" || exit 1
  done
  ls -la "${WHEELS:-.whl}"
  exit 0
fi

start=$(date +%s)
BUDGET=${BUDGET:-240}
WIDTHS=${WIDTHS:-32,64}
CWIDTHS=${CWIDTHS:-32}
RES=${RES:-64}
BATCH=${BATCH:-64}
STEPS=${STEPS:-30}
CSTEPS=${CSTEPS:-1000}
CIMAGES=${CIMAGES:-64}
TRACE_STEPS=${TRACE_STEPS:-20}
MATMUL=${MATMUL:-8192}
DATA_IMAGES=${DATA_IMAGES:-2048}
COMPILE=${COMPILE:-1}         # 0: skip the torch.compile variant
N_CRITIC=${N_CRITIC:-0}       # critic updates per iteration; 0: the config's (5)
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
RESULTS=${RESULTS:-${OUT:-gpu_bench_results}}
WORK=${WORK:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # PyTorch runs after JAX
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # jaxinpaint, uninstalled
mkdir -p "$RESULTS" "$WORK"
rows="$RESULTS/rows.jsonl"
rm -f "$rows"
exec > >(tee -a "$RESULTS/log.txt") 2>&1

elapsed() { echo $(( $(date +%s) - start )); }
say() { echo "[$(elapsed)s] $*"; }

# The image has jax, flax, optax, orbax, chex and torch; ml_collections and
# dm_pix travel as wheels when it lacks them.
if ! "$PYTHON" -c 'import ml_collections, dm_pix' 2> /dev/null &&
   compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target /tmp/site "$WHEELS"/ml_collections-*.whl \
    "$WHEELS"/dm_pix-*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
"$PYTHON" -c 'import jax, torch; print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__, torch.cuda.is_available())' || exit 1
command -v nvidia-smi > /dev/null && nvidia-smi -L

part() {  # part SECONDS MODE ARGS...: one process, at most SECONDS and
  # never past the budget
  local limit=$1; shift
  local left=$(( BUDGET - $(elapsed) ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    say "skipped (budget): $*"
    return
  fi
  say "$* (at most ${limit}s)"
  timeout -k 5 "$limit" "$PYTHON" bench/gpu_bench.py "$@" --json "$rows" \
    --resolution "$RES" --batch "$BATCH" --n-critic "$N_CRITIC"
  local code=$?
  [ "$code" = 0 ] || say "exit code $code ($([ "$code" = 124 ] && echo 'time limit' || echo failed)): $*"
}

# Shares of the budget (seconds), in order of importance.
part "${T_PEAK:-15}" peak --matmul "$MATMUL"
part "${T_JAX_TRAIN:-100}" jax-train --widths "$WIDTHS" --steps "$STEPS" \
  --data-images "$DATA_IMAGES" --trace "$WORK/trace" --trace-steps "$TRACE_STEPS"
part "${T_TORCH_TRAIN:-40}" torch-train --widths "$WIDTHS" --steps "$STEPS" \
  --variants eager,bf16_cl
part "${T_JAX_COMPLETE:-40}" jax-complete --widths "$CWIDTHS" \
  --images "$CIMAGES" --csteps "$CSTEPS"
part "${T_TORCH_COMPLETE:-25}" torch-complete --widths "$CWIDTHS" \
  --images "$CIMAGES" --csteps "$CSTEPS"
# Last: inductor's compilation takes what is left of the budget.
[ "$COMPILE" = 1 ] && part "$BUDGET" torch-train \
  --widths "${WIDTHS%%,*}" --steps "$STEPS" --variants compile

# The trace: everything if it fits, else the Perfetto JSON alone.
if [ -d "$WORK/trace" ]; then
  tar -czf "$RESULTS/trace.tar.gz" -C "$WORK" trace
  if [ "$(stat -c %s "$RESULTS/trace.tar.gz")" -gt $(( 15 * 1024 * 1024 )) ]; then
    (cd "$WORK" && find trace -name '*.trace.json.gz' -print0 |
      tar -czf "$RESULTS/trace.tar.gz" --null -T -)
  fi
  say "trace: $(du -h "$RESULTS/trace.tar.gz" | cut -f1)"
  "$PYTHON" bench/trace_top_ops.py "$RESULTS/trace.tar.gz" --top 25 \
    > "$RESULTS/top_ops.txt" && head -60 "$RESULTS/top_ops.txt"
fi
say "done; the table:"
"$PYTHON" bench/gpu_bench.py table --json "$rows" --table "$RESULTS/table.md"
