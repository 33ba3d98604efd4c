#!/usr/bin/env bash
# One command for an offline GPU host: train under a wall-clock budget, export,
# tabulate, run the completion settings grid, benchmark, and pack the results
# into a few files. docs/gpu_runs.md is the runbook: per model, the exact
# prepare command, the folders to carry, the host command and its timeout,
# what comes back and how to ship it.
#
#   scripts/gpu_run.sh prepare            # here: pack what travels, check its size
#   scripts/gpu_run.sh                    # on the GPU host: train, export, tables, grid
#   scripts/gpu_run.sh grid               # on the GPU host: only the grid, on INIT_FROM
#   DATA=.gpudata-svhn64 TRAIN_DIR=../shared/data/svhn/train \
#     TEST_DIR=../shared/data/svhn/test COUNT=8000 TEST_RES=64 scripts/gpu_run.sh prepare
#   DATA=.gpudata-svhn64 CONFIG=configs/svhn64.py RES=64 INIT_FROM= \
#     BUDGET=550 RESERVE=120 BENCH=0 GRID=0 RESULTS=$OUT scripts/gpu_run.sh
#   BUDGET=720 RESERVE=240 WIDTH=8 BATCH=8 FACES=4 CSTEPS=20 BENCH=0 \
#     GRID_FACES=2 GRID_STEPS=2 scripts/gpu_run.sh   # dry run on a CPU
#
# prepare (scripts/prepare_gpu_data.py, pip download): $DATA (default
# .gpudata; any .gpudata* folder is git-ignored) gets train.zip (COUNT
# training images at JPEG 85, the window of run RUN: from index RUN * COUNT
# mod the set's size, wrapping around; or from OFFSET), test.zip (TEST_COUNT
# test images, default all; TEST_RES: stored at that size), window.json (the
# window, which comes back in figures.json); $WHEELS (default .whl) the
# pure-Python wheels at the versions installed here (flax, optax, orbax,
# chex, dm-pix, ml_collections: CI's), installed into /tmp/site on the host
# so only jax/jaxlib differ from CI. It then adds up what travels (the
# working tree git sees, $DATA, $WHEELS) and fails, suggesting a COUNT,
# when that is over LIMIT_MIB (default 64).
# Settings on the host (environment): BUDGET seconds for everything (the
# training time limit is what is left after RESERVE seconds for export,
# tables, grid, benches), WIDTH, BATCH, CONFIG and RES (the data set and
# its resolution), INIT_FROM (warm start; default the shipped model of the
# config, jaxinpaint/assets/<config name>, used only if it has this width
# and resolution; empty: train from scratch), FACES (test images per
# table), MASKS, CSTEPS (Adam steps), GRID=0 to skip the settings grid
# (experiments/settings_grid.py; else it runs after the tables if more than
# GRID_NEED seconds are left, on GRID_FACES images, GRID_STEPS steps, and
# stops starting cells at the budget), BENCH=0 to skip the benchmarks,
# TRAIN_GRACE (seconds past the time limit before training is killed,
# default 120), TRAIN_STEPS (stop training there if the time limit has not
# stopped it first; default no limit: a test's dry run sets a few), PYTHON.
# Output: at most 8 files in $RESULTS (default $OUT, else gpu_results):
#   model.tar (the exported bfloat16 model; over 15 MiB: model.tar.part00,
#   01, ...), tables.tar (tables/ and grid/), samples.png,
#   metrics.jsonl, figures.json (it/s, final step, the tables, the grid,
#   the training window), log.txt, jax_cache.tar (if <= 15 MB; worth
#   carrying in $DATA next time only while the programs are unchanged, and
#   only if the carried total stays within 64 MiB). `grid` leaves grid.tar,
#   log.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  # The pure-Python wheels at the versions installed here (the ones CI
  # tests), then a window of the training images and the test images, then
  # a check that what travels fits the host's upload limit.
  DATA=${DATA:-.gpudata}
  WHEELS=${WHEELS:-.whl}
  for package in flax optax orbax-checkpoint chex dm-pix ml_collections; do
    version=$(python3 -c "import importlib.metadata as m; print(m.version('$package'))") &&
    python3 -m pip download -q --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d "$WHEELS" "$package==$version" || exit 1
  done
  python3 scripts/prepare_gpu_data.py --train "${TRAIN_DIR:-../shared/data/celeba64/train}" \
    --test "${TEST_DIR:-../shared/data/celeba64/test}" \
    --count "${COUNT:-20000}" --out "$DATA" \
    ${RUN:+--run "$RUN"} ${OFFSET:+--offset "$OFFSET"} \
    ${TEST_COUNT:+--test-count "$TEST_COUNT"} \
    ${TEST_RES:+--test-resolution "$TEST_RES"} || exit 1
  ls -la "$DATA" "$WHEELS"
  # What travels: the working tree git sees (tracked files and untracked
  # ones it does not ignore) plus the carried $DATA and $WHEELS.
  tree=$(git ls-files -z --cached --others --exclude-standard |
         du --files0-from=- -cb 2>/dev/null | tail -1 | cut -f1)
  carried=$(du -cb "$DATA" "$WHEELS" | tail -1 | cut -f1)
  limit=$(( ${LIMIT_MIB:-64} * 1024 * 1024 ))
  total=$(( tree + carried ))
  echo "travels: tree $tree + $DATA and $WHEELS $carried = $total bytes" \
    "($(awk "BEGIN { printf \"%.1f\", $total / 1048576 }") MiB of ${LIMIT_MIB:-64})"
  if [ "$total" -gt "$limit" ]; then
    train_bytes=$(stat -c %s "$DATA/train.zip")
    count=$(python3 -c "import json; print(json.load(open('$DATA/window.json'))['count'])")
    fits=$(( count - ( total - limit ) * count / train_bytes - count / 100 ))
    hint=""
    [ -z "${TEST_COUNT:-}" ] && hint=" (or fewer test images: TEST_COUNT=256)"
    echo "error: $DATA, $WHEELS and the tree are $(( total - limit )) bytes" \
      "over ${LIMIT_MIB:-64} MiB; rm -rf $DATA and prepare again with" \
      "COUNT=$fits$hint" >&2
    exit 1
  fi
  exit 0
fi

start=$(date +%s)
BUDGET=${BUDGET:-520}
RESERVE=${RESERVE:-170}
WIDTH=${WIDTH:-32}
BATCH=${BATCH:-64}
CONFIG=${CONFIG:-configs/celeba64.py}
FACES=${FACES:-256}
CSTEPS=${CSTEPS:-1000}
BENCH=${BENCH:-1}
RES=${RES:-64}
MASKS=${MASKS:-center,three_squares}
GRID=${GRID:-1}
GRID_FACES=${GRID_FACES:-$FACES}
GRID_STEPS=${GRID_STEPS:-$CSTEPS}
GRID_NEED=${GRID_NEED:-60}
# Seconds past the time limit before training is stopped by force: the end
# of training (BatchNorm recalibration, export) must fit in it; a loaded CPU
# compiling those programs for a dry run needs more than a GPU.
TRAIN_GRACE=${TRAIN_GRACE:-120}
TRAIN_STEPS=${TRAIN_STEPS:-10000000}
PYTHON=${PYTHON:-python3}
# The shipped model of this config (assets/celeba64 for configs/celeba64.py).
INIT_FROM=${INIT_FROM-jaxinpaint/assets/$(basename "$CONFIG" .py)}
DATA=${DATA:-.gpudata}
WHEELS=${WHEELS:-.whl}
RESULTS=${RESULTS:-${OUT:-gpu_results}}
WORK=${WORK:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # jaxinpaint, uninstalled
mkdir -p "$RESULTS" "$WORK"
exec > >(tee -a "$RESULTS/log.txt") 2>&1

elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( BUDGET - $(elapsed) )); }
say() { echo "[$(elapsed)s] $*"; }

# 1. Packages: the carried wheels, if any, then the versions and the device.
check_packages() {
  "$PYTHON" - <<'EOF'
import importlib
for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'chex',
             'dm_pix', 'ml_collections', 'numpy', 'PIL'):
  m = importlib.import_module(name)
  print(f'{name} {getattr(m, "__version__", "?")} {m.__file__}')
import jax
print('devices:', jax.devices())
EOF
}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site "$WHEELS"/*.whl &&
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if ! check_packages; then
  # A carried wheel that does not fit the image (e.g. its tensorstore): keep
  # the image's own packages and add only what it lacks.
  say "carried wheels failed to import; falling back to the image's packages"
  rm -rf /tmp/site && "$PYTHON" -m pip install -q --no-index --no-deps \
    --target /tmp/site "$WHEELS"/ml_collections-*.whl "$WHEELS"/dm_pix-*.whl
  check_packages || exit 1
fi
command -v nvidia-smi > /dev/null && nvidia-smi -L

# XLA's compilation cache: the processes below share programs, and a cache
# brought back from the last run (jax_cache.tar in $DATA) skips most of the
# minutes a GPU spends compiling, when its jax and GPU are the same.
export JAX_COMPILATION_CACHE_DIR="$WORK/jax_cache"
[ -f "$DATA/jax_cache.tar" ] && tar -xf "$DATA/jax_cache.tar" -C "$WORK"

# 2. Data: the test images (for the tables and the grid), then, unless
# only the grid runs, the training images decoded once into uint8.
"$PYTHON" scripts/prepare_gpu_data.py --train "$DATA/test.zip" \
  --extract-to "$WORK/test" || exit 1

settings_grid() {  # settings_grid MODEL: the grid in the time left
  say "settings grid on $1: $GRID_FACES faces, $GRID_STEPS steps, $(( $(left) - 10 ))s"
  timeout -k 10 "$(left)" "$PYTHON" experiments/settings_grid.py \
    --model "$1" --input "$WORK/test" --masks "$MASKS" \
    --limit "$GRID_FACES" --steps "$GRID_STEPS" --batch-size "$GRID_FACES" \
    --time-limit $(( $(left) - 10 )) --out "$WORK/grid" --no-progress
  say "grid ended with exit code $?"
}
if [ "${1:-}" = grid ]; then  # the grid alone, on INIT_FROM (no training)
  settings_grid "$INIT_FROM"
  [ -d "$WORK/grid" ] && tar -cf "$RESULTS/grid.tar" -C "$WORK" grid
  say "done"
  ls -la "$RESULTS"
  exit 0
fi

npz="$WORK/train.npz"
"$PYTHON" scripts/prepare_gpu_data.py --train "$DATA/train.zip" \
  --decode-to "$npz" --resolution "$RES" || exit 1
[ -f "$DATA/window.json" ] &&
  say "training window: $(tr -d ' \n' < "$DATA/window.json")"

# 3. Train until the budget minus the reserve (the time limit counts from
# the process start), then finalize and export the bfloat16 model. Warm
# start from INIT_FROM when it holds the same networks. `timeout` is only a
# safety net: SIGTERM also saves a checkpoint.
init_flag=()
if [ -n "$INIT_FROM" ]; then
  if "$PYTHON" -c "import json,sys; c=json.load(open('$INIT_FROM/config.json'))['model']; sys.exit(not (c['width']==$WIDTH and c['resolution']==$RES))" 2>/dev/null; then
    init_flag=(--config.train.init_from="$INIT_FROM")
    say "warm start from $INIT_FROM"
  else
    say "not warm-starting: $INIT_FROM is not a width-$WIDTH ${RES}x$RES model (or absent)"
  fi
fi
train() {  # train EXTRA_FLAGS...: until the budget minus the reserve
  local train_s=$(( $(left) - RESERVE ))
  say "training for ${train_s}s: $CONFIG width $WIDTH batch $BATCH bfloat16 $*"
  timeout -s TERM -k 60 $(( train_s + TRAIN_GRACE )) "$PYTHON" train.py --config "$CONFIG" \
    --workdir "$WORK/run" "${init_flag[@]}" \
    --config.data.folder= --config.data.npz="$npz" \
    --config.model.width="$WIDTH" --config.model.dtype=bfloat16 \
    --config.train.batch_size="$BATCH" --config.train.steps="$TRAIN_STEPS" \
    --config.train.time_limit="$train_s" --config.train.export_to="$WORK/model" \
    --config.train.log_every=100 --config.train.sample_every=1000 \
    --config.train.checkpoint_every=1000 "$@"
}
train --config.data.on_device=True
code=$?
say "training ended with exit code $code"
# A failure before any checkpoint (e.g. the device path on a new jax) gets
# one retry on the host input pipeline and the unrolled critic loop, so the
# budget still becomes a model.
if [ ! -d "$WORK/model" ] && [ -z "$(ls "$WORK/run/checkpoints" 2>/dev/null)" ] &&
   [ "$(left)" -gt $(( RESERVE + 60 )) ]; then
  rm -rf "$WORK/run"
  train --config.data.on_device=False --config.train.critic_loop=unroll
  say "retry ended with exit code $?"
fi
[ -d "$WORK/model" ] || "$PYTHON" -m jaxinpaint.cli.export --workdir "$WORK/run" \
  --out "$WORK/model" --dtype bfloat16 || exit 1

# 4. Bring back the model, the metrics and the last samples.
tar -cf "$WORK/model.tar" -C "$WORK" model
if [ "$(stat -c %s "$WORK/model.tar")" -le $(( 15 * 1024 * 1024 )) ]; then
  mv "$WORK/model.tar" "$RESULTS/"
else  # width 64: ~30 MB; `cat model.tar.part* > model.tar` joins the parts
  split -b 15M -d "$WORK/model.tar" "$RESULTS/model.tar.part"
fi
cp "$WORK/run/metrics.jsonl" "$RESULTS/"
last_sample=$(ls "$WORK/run/samples/"*.png 2>/dev/null | tail -1)
[ -n "$last_sample" ] && cp "$last_sample" "$RESULTS/samples.png"
say "model exported"

# 5. The paper's tables on the test faces, paper loss and Yeh et al.'s.
"$PYTHON" experiments/paper_tables.py --input "$WORK/test" --wgan "$WORK/model" \
  --masks "$MASKS" --methods paper_wgan,yeh_wgan --limit "$FACES" --steps "$CSTEPS" \
  --batch-size "$FACES" --out "$WORK/tables" --no-progress
say "tables done"
tar -cf "$RESULTS/tables.tar" -C "$WORK" tables

# 5b. The completion settings grid (experiments/settings_grid.py: one factor
# at a time around completion's defaults, then the best pair), in what the
# budget leaves after the tables; it stops starting cells at the budget and
# keeps the cells it finished. Its grid/ joins tables.tar. GRID=0 skips it.
if [ "$GRID" = 1 ] && [ "$(left)" -gt "$GRID_NEED" ]; then
  settings_grid "$WORK/model"
  [ -d "$WORK/grid" ] && tar -rf "$RESULTS/tables.tar" -C "$WORK" grid
else
  say "grid skipped (GRID=$GRID, $(left)s left, needs $GRID_NEED)"
fi

# 6. Benchmarks, each only if the budget still allows it.
bench() {  # bench SECONDS_NEEDED command...
  local need=$1; shift
  if [ "$BENCH" = 1 ] && [ "$(left)" -gt "$need" ]; then
    say "bench: $*"
    timeout -k 10 "$(left)" "$@" 2>&1 | grep -v '^WARNING' | tee -a "$WORK/bench.txt"
  else
    say "skipped (budget): $*"
  fi
}
for width in 32 64; do
  for dtype in bfloat16 float32; do
    bench 60 "$PYTHON" bench/completion.py --width $width --images 64 \
      --steps 1000 --dtype $dtype --batched-only
  done
  [ $width = 32 ] && bench 120 "$PYTHON" bench/train_step.py --widths 32,64 \
    --config.model.dtype=bfloat16 --steps 30
done

# 7. One JSON of the figures: training speed from metrics.jsonl, the tables.
"$PYTHON" - "$WORK" "$RESULTS/figures.json" "$DATA" <<'EOF'
import json, sys, pathlib
work, out, data = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
records = [json.loads(l) for l in open(work / 'run/metrics.jsonl')]
# One flush writes its records with one time stamp: the rate is measured
# between the first flush (after compilation) and the last one.
timed = [(r['time'], r['step']) for r in records if 'g_loss' in r]
figures = {'final_step': max(r['step'] for r in records)}
(t0, s0), (t1, s1) = max(t for t in timed if t[0] == timed[0][0]), timed[-1]
if t1 > t0:
  figures['train_it_per_s'] = (s1 - s0) / (t1 - t0)
results = work / 'tables/results.json'
if results.exists():
  figures['tables'] = json.loads(results.read_text())
# The training faces' window (prepare_gpu_data.py), for the model card.
window = data / 'window.json'
if window.exists():
  figures['train_window'] = json.loads(window.read_text())
grid = work / 'grid/grid.json'
if grid.exists():
  figures['grid'] = json.loads(grid.read_text())
bench = work / 'bench.txt'
figures['bench'] = bench.read_text() if bench.exists() else ''
pathlib.Path(out).write_text(json.dumps(figures, indent=1))
print('figures:', {k: v for k, v in figures.items()
                   if k not in ('tables', 'grid')})
EOF
cache_mb=$(du -sm "$WORK/jax_cache" 2>/dev/null | cut -f1)
if [ -n "$cache_mb" ] && [ "$cache_mb" -le 15 ]; then
  tar -cf "$RESULTS/jax_cache.tar" -C "$WORK" jax_cache
fi
say "done"
ls -la "$RESULTS"
