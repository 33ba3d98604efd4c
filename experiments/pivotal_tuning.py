"""Search only vs search + pivotal tuning, on real test faces and on G's own
samples (docs/results.md, "Pivotal tuning").

For each mask, the first --images test faces are completed by the latent
search (`batched.inpaint_batches`); then, from the same ẑ, each
--tune-steps N tunes every image's own copy of G and fills from G_θ(ẑ)
(`completion.fill_from_latents`). Each is scored with
`batched.evaluate` (MSE, PSNR, SSIM, hole MSE on uint8 values) and with
an independent face
detector (`face_check.haar_face_hits`), timed without compilation (a
one-step call compiles first), and the latent-recovery check
(`latent_recovery.measure`) is run with and without tuning. Writes
results.json and table.md to --out and the figure masked | search only |
search + tuning | original of the first --figure-rows faces.

The face check needs OpenCV 4.x's Haar cascades (pip install
"opencv-python-headless<5"; 5.0 dropped them).

  python experiments/pivotal_tuning.py      # the CPU scale of docs/results.md
  python experiments/pivotal_tuning.py --images 256 --steps 1000 \\
      --tune-steps 50,200 --batch-size 64    # the issue's scale, for a GPU
"""
import argparse
import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import jax
import numpy as np

from jaxinpaint import completion
from jaxinpaint.completion import batched
from jaxinpaint.data import grids, masks
from jaxinpaint.evaluation import face_check, latent_recovery
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import loading

REPO = Path(__file__).resolve().parents[1]


def build_parser():
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--data', default=str(REPO.parent / 'shared/data/celeba64/test'))
  p.add_argument('--model', default=None, help='default: shipped celeba64')
  p.add_argument('--images', type=int, default=8)
  p.add_argument('--masks', default='center,three_squares')
  p.add_argument('--steps', type=int, default=100, help='search steps')
  p.add_argument('--tune-steps', default='30', help='comma list of N > 0')
  p.add_argument('--tune-lr', type=float, default=1e-4)
  p.add_argument('--tune-layers', default='all')
  p.add_argument('--tune-locality', type=float, default=1.0)
  p.add_argument('--batch-size', type=int, default=8)
  p.add_argument('--recovery-images', type=int, default=4,
                 help='G samples for the latent-recovery check (0: skip)')
  p.add_argument('--recovery-steps', type=int, default=50)
  p.add_argument('--figure-rows', type=int, default=8)
  p.add_argument('--out', default=str(REPO / 'docs/results/pivotal_tuning'))
  p.add_argument('--figure', default=str(REPO /
                                         'docs/results/pivotal_tuning.png'))
  return p


def scores(originals, completed, mask):
  _, summary = batched.evaluate(originals, completed, mask)
  summary['face_hits'] = float(face_check.haar_face_hits(completed).mean())
  return summary


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def main(argv=None):
  args = build_parser().parse_args(argv)
  tune_steps = [int(s) for s in args.tune_steps.split(',')]
  model = loading.load_model(args.model)
  res = model.resolution
  faces = inputs.load_inputs(args.data, res, args.images)[0].read_all()
  n = len(faces)
  spec = completion.LOSSES['paper']
  search = completion.Options(steps=args.steps)
  tune_settings = completion.Tuning(lr=args.tune_lr, layers=args.tune_layers,
                                    locality=args.tune_locality)
  tuning = dataclasses.replace(search, tuning=tune_settings)
  memory = completion.tuning_bytes_per_image(model, tuning)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  # Paths as given relative to the repository, so results.json names no
  # machine's folders.
  settings = {k: (os.path.relpath(v, REPO) if k in ('data', 'out', 'figure')
                  else v) for k, v in vars(args).items()}
  results = dict(settings=dict(settings, n_images=n, memory=memory,
                               device=jax.devices()[0].device_kind,
                               cpu_count=os.cpu_count()), masks={})

  def save():
    (out / 'results.json').write_text(json.dumps(results, indent=1))

  indices = np.arange(n)
  keys = completion.image_keys(0, indices)
  for kind in args.masks.split(','):
    mask = masks.make_masks(kind, 1, res, res, 0)
    y = np.where(mask > 0.5, faces, np.float32(0))
    row = results['masks'][kind] = dict(
        original_face_hits=float(face_check.haar_face_hits(faces).mean()),
        masked_face_hits=float(face_check.haar_face_hits(y).mean()))
    # One step first: compiles, so the timed runs are the steps alone.
    run_search = lambda steps: batched.inpaint_batches(
        model, y, mask, indices, spec=spec,
        options=dataclasses.replace(search, steps=steps),
        batch_size=args.batch_size, seed=0, progress=False)
    run_search(1)
    found, seconds = timed(lambda: run_search(args.steps))
    row['search'] = dict(scores(faces, found['blended'], mask),
                         seconds_per_image=seconds / n,
                         load_average=os.getloadavg()[0])
    print(kind, 'search', row['search'], flush=True)
    save()
    columns = {'search': found['blended']}
    for steps in tune_steps:
      def run_tuning(steps=steps):
        pieces = []
        for start in range(0, n, args.batch_size):
          b = slice(start, start + args.batch_size)
          pieces.append(jax.device_get(completion.fill_from_latents(
              model, y[b], np.broadcast_to(mask, y[b].shape[:-1] + (1,)),
              found['z'][b], keys[b], spec=spec,
              options=dataclasses.replace(search, tuning=dataclasses.replace(
                  tune_settings, steps=steps)))))
        return {k: np.concatenate([p[k] for p in pieces])
                for k in ('blended', 'generated', 'tune_trace')}
      if steps == tune_steps[0]:
        run_tuning(1)
      tuned, seconds = timed(run_tuning)
      trace = tuned['tune_trace']
      row[f'tune_{steps}'] = dict(
          scores(faces, tuned['blended'], mask),
          seconds_per_image=seconds / n, load_average=os.getloadavg()[0],
          tune_loss_first=float(trace[:, 0].mean()),
          tune_loss_last=float(trace[:, -1].mean()),
          monotone_fraction=float(np.mean(np.all(np.diff(trace, axis=1) <= 0,
                                                 axis=1))))
      columns[steps] = tuned['blended']
      print(kind, 'tune', steps, row[f'tune_{steps}'], flush=True)
      save()
    rows = args.figure_rows
    figure = Path(args.figure)
    if kind != 'center':
      figure = figure.with_name(f'{figure.stem}_{kind}{figure.suffix}')
    grids.save_rows(figure, [y[:rows], columns['search'][:rows],
                             columns[tune_steps[-1]][:rows], faces[:rows]])

  if args.recovery_images:
    for steps in [0] + tune_steps:
      rows, seconds = timed(lambda: latent_recovery.measure(
          model, losses=('paper',), constraints=('box',),
          n=args.recovery_images, steps=args.recovery_steps,
          batch_size=args.recovery_images, tune_steps=steps,
          tune_options=dict(lr=args.tune_lr, layers=args.tune_layers,
                            locality=args.tune_locality)))
      results.setdefault('latent_recovery', []).extend(rows)
      print('latent recovery', rows, f'{seconds:.0f} s', flush=True)
      save()
  results['max_rss_gib'] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                            / 2**20)
  save()
  print('max RSS', results['max_rss_gib'], 'GiB')


if __name__ == '__main__':
  main()
