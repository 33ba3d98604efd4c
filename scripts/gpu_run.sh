#!/usr/bin/env bash
# One command for an offline GPU host: train under a wall-clock budget, export,
# tabulate, benchmark, and pack the results into a few files.
#
#   scripts/gpu_run.sh                    # defaults below, on the GPU host
#   BUDGET=180 WIDTH=8 BATCH=8 FACES=4 CSTEPS=20 BENCH=0 \
#     scripts/gpu_run.sh                  # dry run on a CPU (a few minutes)
#
# Inputs (prepared beforehand with scripts/prepare_gpu_data.py):
#   $DATA/train.zip  training images,   $DATA/test.zip  test images
#   $WHEELS      pure-Python wheels installed into /tmp/site when present
#                (the versions CI tests: flax, optax, orbax, chex,
#                ml_collections), so only jax/jaxlib differ from CI.
# Settings (environment): BUDGET seconds for everything (the training time
# limit is what is left after RESERVE seconds for export, tables, benches),
# WIDTH, BATCH, CONFIG, FACES (test faces per table), CSTEPS (Adam steps),
# BENCH=0 to skip the benchmarks.
# Output: at most 8 files in $RESULTS (default $OUT, else gpu_results):
#   model.tar (the exported bfloat16 model), tables.tar, samples.png,
#   metrics.jsonl, figures.json, log.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
BUDGET=${BUDGET:-520}
RESERVE=${RESERVE:-200}
WIDTH=${WIDTH:-32}
BATCH=${BATCH:-64}
CONFIG=${CONFIG:-configs/celeba64.py}
FACES=${FACES:-256}
CSTEPS=${CSTEPS:-1000}
BENCH=${BENCH:-1}
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
  python3 - <<'EOF'
import importlib
for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'chex',
             'ml_collections', 'numpy', 'PIL'):
  m = importlib.import_module(name)
  print(f'{name} {getattr(m, "__version__", "?")} {m.__file__}')
import jax
print('devices:', jax.devices())
EOF
}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site "$WHEELS"/*.whl &&
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if ! check_packages; then
  # A carried wheel that does not fit the image (e.g. its tensorstore): keep
  # the image's own packages and add only what it lacks.
  say "carried wheels failed to import; falling back to the image's packages"
  rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps \
    --target /tmp/site "$WHEELS"/ml_collections-*.whl
  check_packages || exit 1
fi
command -v nvidia-smi > /dev/null && nvidia-smi -L

# 2. Data: decode the training images once into memory-friendly uint8.
npz="$WORK/train.npz"
python3 scripts/prepare_gpu_data.py --train "$DATA/train.zip" \
  --decode-to "$npz" --resolution 64 || exit 1
python3 scripts/prepare_gpu_data.py --train "$DATA/test.zip" \
  --extract-to "$WORK/test" || exit 1

# 3. Train until the budget minus the reserve; SIGTERM saves a checkpoint.
train_s=$(( $(left) - RESERVE ))
say "training for ${train_s}s: $CONFIG width $WIDTH batch $BATCH bfloat16"
timeout -s TERM -k 60 "$train_s" python3 train.py --config "$CONFIG" \
  --workdir "$WORK/run" \
  --config.data.folder= --config.data.npz="$npz" \
  --config.model.width="$WIDTH" --config.model.dtype=bfloat16 \
  --config.train.batch_size="$BATCH" --config.train.steps=10000000 \
  --config.train.log_every=100 --config.train.sample_every=1000 \
  --config.train.checkpoint_every=500
say "training ended with exit code $? (124/130: stopped by the time limit)"

# 4. Export in bfloat16 (recalibrates G's BatchNorm statistics).
python3 -m jaxinpaint.export --workdir "$WORK/run" --out "$WORK/model" \
  --dtype bfloat16 || exit 1
tar -cf "$RESULTS/model.tar" -C "$WORK" model
cp "$WORK/run/metrics.jsonl" "$RESULTS/"
last_sample=$(ls "$WORK/run/samples/"*.png 2>/dev/null | tail -1)
[ -n "$last_sample" ] && cp "$last_sample" "$RESULTS/samples.png"
say "model exported"

# 5. The paper's tables on the test faces, paper loss and Yeh et al.'s.
python3 bench/paper_tables.py --input "$WORK/test" --wgan "$WORK/model" \
  --methods paper_wgan,yeh_wgan --limit "$FACES" --steps "$CSTEPS" \
  --batch-size "$FACES" --out "$WORK/tables" --no-progress
say "tables done"
tar -cf "$RESULTS/tables.tar" -C "$WORK" tables

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
bench 30 python3 bench/train_step.py --config.model.width=32 \
  --config.model.dtype=bfloat16 --steps 30
bench 30 python3 bench/completion.py --width 32 --images 64 --steps 1000 \
  --dtype bfloat16 --batched-only
bench 30 python3 bench/completion.py --width 32 --images 64 --steps 1000 \
  --dtype float32 --batched-only
bench 40 python3 bench/train_step.py --config.model.width=64 \
  --config.model.dtype=bfloat16 --steps 20
bench 30 python3 bench/completion.py --width 64 --images 64 --steps 1000 \
  --dtype bfloat16 --batched-only

# 7. One JSON of the figures: training speed from metrics.jsonl, the tables.
python3 - "$WORK" "$RESULTS/figures.json" <<'EOF'
import json, sys, pathlib
work, out = pathlib.Path(sys.argv[1]), sys.argv[2]
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
bench = work / 'bench.txt'
figures['bench'] = bench.read_text() if bench.exists() else ''
pathlib.Path(out).write_text(json.dumps(figures, indent=1))
print('figures:', {k: v for k, v in figures.items() if k != 'tables'})
EOF
say "done"
ls -la "$RESULTS"
