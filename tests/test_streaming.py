"""Inputs that stream: inpaint.py reads, completes and writes batch by batch.

Memory is bounded by the batch size, not by the number of images: the
rows readers of `inputs` decode only the rows a batch needs (the next batch
on a thread while the current one computes), and each of several processes
reads only its own block. Before, every input was decoded into one array
before the first batch, in every process.
"""
import threading

import numpy as np
import pytest

from jaxinpaint import completion, data, models
from jaxinpaint.cli import inpaint
from jaxinpaint.completion import batched
from jaxinpaint.data import masks
from jaxinpaint.inpaint_job import inputs, processes
from jaxinpaint.training import config_schema
from test_inpaint_cli import FAST, RES, ckpt, write_image  # noqa: F401

SPEC = completion.LOSSES['paper']


class CountingRows(inputs.Rows):
  """An array as a rows reader that records every read and how many reads
  overlap (the prefetch thread)."""

  def __init__(self, array):
    self.array, self.reads, self.active, self.most = array, [], 0, 0
    self.lock = threading.Lock()

  def __len__(self):
    return len(self.array)

  def read(self, rows):
    with self.lock:
      self.active += 1
      self.most = max(self.most, self.active)
    self.reads.append(list(rows))
    try:
      return self.array[np.asarray(rows)]
    finally:
      with self.lock:
        self.active -= 1


def test_a_rows_reader_gives_the_arrays_results_reading_a_batch_at_a_time():
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 16, 4, 8
  model = models.Model.from_config(c.model, models.random_variables(c.model))
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
  mask = masks.make_masks('random', 5, 16, 16, seed=3)
  run = lambda y, m, **kw: batched.inpaint_batches(
      model, y, m, np.arange(5), spec=SPEC,
      options=completion.Options(steps=2), batch_size=2, seed=0,
      progress=False, **kw)
  whole = run(images, mask)
  reader = CountingRows(images)
  seen = []
  streamed = run(reader, inputs.GeneratedMasks('random', 5, 16, seed=3),
                 keep=('final_loss',),
                 on_batch=lambda start, stop, b: seen.append(
                     (start, stop, b['blended'], b['images'], b['masks'])))
  # Batches of 2 (the last padded with its own row), read once each.
  assert reader.reads == [[0, 1], [2, 3], [4, 4]]
  assert set(streamed) == {'final_loss'}
  np.testing.assert_array_equal(streamed['final_loss'], whole['final_loss'])
  for start, stop, blended, batch_images, batch_masks in seen:
    np.testing.assert_array_equal(blended, whole['blended'][start:stop])
    np.testing.assert_array_equal(batch_images, images[start:stop])
    np.testing.assert_array_equal(batch_masks, mask[start:stop])
  assert [s[:2] for s in seen] == [(0, 2), (2, 4), (4, 5)]


def test_generated_masks_read_any_rows_alone():
  everything = masks.make_masks('free_form', 6, 32, 32, seed=7)
  reader = inputs.GeneratedMasks('free_form', 6, 32, seed=7)
  np.testing.assert_array_equal(reader.read([4, 1]), everything[[4, 1]])


def _record_decoded_files(monkeypatch):
  """The lists of files each call of data.load_images decodes."""
  calls = []
  load = data.load_images

  def spy(paths, resolution):
    calls.append([str(p) for p in paths])
    return load(paths, resolution)

  monkeypatch.setattr(data, 'load_images', spy)
  return calls


def test_inpaint_decodes_a_batch_at_a_time(ckpt, tmp_path, capsys,
                                           monkeypatch):
  for i in range(5):
    write_image(tmp_path / 'in' / f'face{i}.png', seed=i)
  calls = _record_decoded_files(monkeypatch)
  args = inpaint.build_parser().parse_args(
      ['--checkpoint', ckpt, '--input', str(tmp_path / 'in'), '--out',
       str(tmp_path / 'out'), '--evaluate', '--grid-max', '2', *FAST])
  plan = inpaint.prepare(args)
  # The check decodes each file alone and keeps nothing.
  assert [len(c) for c in calls] == [1] * 5 and len(plan.images) == 5
  calls.clear()
  summary = inpaint.run(args, plan)
  assert summary['n_images'] == 5
  # The grid's 2 rows once, then batches of 2: never all 5 at once.
  assert [len(c) for c in calls] == [2, 2, 2, 2]
  capsys.readouterr()


def test_one_of_several_processes_reads_only_its_block(ckpt, tmp_path,
                                                       capsys, monkeypatch):
  for i in range(5):
    write_image(tmp_path / 'in' / f'face{i}.png', seed=i)
  calls = _record_decoded_files(monkeypatch)
  args = inpaint.build_parser().parse_args(
      ['--checkpoint', ckpt, '--input', str(tmp_path / 'in'), '--out',
       str(tmp_path / 'out'), *FAST])
  args.share = processes.Share(1, 2, 'run')  # images 2, 3, 4 of 0 .. 4
  plan = inpaint.prepare(args)
  calls.clear()
  inpaint.run(args, plan)
  read = sorted({p.rsplit('/', 1)[-1] for c in calls for p in c})
  assert read == ['face2.png', 'face3.png', 'face4.png']
  assert max(len(c) for c in calls) == 2
  capsys.readouterr()


@pytest.mark.parametrize('kind', ['random', 'folder'])
def test_mask_notes_read_masks_in_chunks(tmp_path, capsys, kind):
  names = [f'im{i}' for i in range(5)]
  if kind == 'folder':
    from PIL import Image  # pylint: disable=g-import-not-at-top
    (tmp_path / 'm').mkdir()
    for i, n in enumerate(names):  # im3: all hole
      Image.fromarray(np.full((8, 8), 0 if i == 3 else 255, np.uint8)).save(
          tmp_path / 'm' / f'{n}.png')
    mask = inputs.load_masks(str(tmp_path / 'm'), names, 8, 0)
    expected = np.array([1, 1, 1, 0, 1], np.float64)
  else:
    mask = inputs.load_masks('random', names, 8, 0)
    expected = masks.make_masks('random', 5, 8, 8, 0).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(inputs.known_fractions(mask, chunk=2), expected)
  inputs.mask_notes(mask, names, conditional=False)
  err = capsys.readouterr().err
  assert ('im3: the mask has no known pixel' in err) == (kind == 'folder')
  assert ('has no hole' in err) == (kind == 'folder')
