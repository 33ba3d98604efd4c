"""End-to-end tests of the inpaint CLI (jaxinpaint.inpaint_cli, inpaint.py).

A width-4, 64x64 model with random weights, exported like a real one. The
CLI runs in-process (`inpaint.main(argv)`), and every run completes
batches of 2 images with the same options, so `complete` compiles once for
the whole file (and `complete_conditional` once).
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxinpaint import completion, data, errors, models
from jaxinpaint.cli import inpaint
from jaxinpaint.completion import api
from jaxinpaint.data import decoding
from jaxinpaint.evaluation import identity
from jaxinpaint.inpaint_job import inputs, outputs, runner
from jaxinpaint.models import checkpoint, loading
from jaxinpaint.training import config_schema

ROOT = Path(__file__).resolve().parents[1]
CELEBA_TEST = ROOT.parent / 'shared' / 'data' / 'celeba64' / 'test'
RES = 64
FAST = ['--steps', '2', '--batch-size', '2']  # same for every run: one compile


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = RES, 4, 16
  model_dir = tmp_path_factory.mktemp('model') / 'tiny64'
  checkpoint.export_inference(model_dir, c, models.random_variables(c.model), 7)
  return str(model_dir)


def write_image(path, size=RES, mode='RGB', seed=0, fill=None):
  """A smooth random image (or a constant `fill`) of the given PIL mode."""
  rng = np.random.default_rng(seed)
  channels = {'RGB': 3, 'RGBA': 4, 'L': 1}[mode]
  if fill is None:
    coarse = rng.integers(0, 256, (8, 8, channels), dtype=np.uint8)
    img = Image.fromarray(coarse.squeeze(-1) if channels == 1 else coarse)
    img = img.resize((size, size), Image.Resampling.BILINEAR)
  else:
    img = Image.new(mode, (size, size), fill)
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  img.save(path)
  return np.asarray(img)


def cli(argv, capsys):
  """Runs the CLI in-process: (exit code, summary or None, stdout, stderr)."""
  try:
    summary, code = inpaint.main([str(a) for a in argv]), 0
  except SystemExit as e:
    summary, code = None, e.code
  out, err = capsys.readouterr()
  return code, summary, out, err


def read_png(path):
  with Image.open(path) as img:
    return np.asarray(img)


def test_help_says_white_is_known(capsys):
  with pytest.raises(SystemExit) as e:
    inpaint.main(['--help'])
  assert e.value.code == 0
  text = capsys.readouterr().out.lower()
  assert 'white = known' in text and 'black = hole' in text
  for flag in ('--checkpoint', '--input', '--mask', '--reference', '--steps',
               '--restarts', '--batch-size', '--loss', '--seed', '--out',
               '--evaluate', '--overwrite', '--resume', '--limit',
               '--no-blend', '--tune-steps'):
    assert flag in text


def test_evaluate_celeba(ckpt, tmp_path, capsys):
  if not CELEBA_TEST.is_dir():
    pytest.skip(f'{CELEBA_TEST} is absent (../shared/data ships with the '
                'development checkout only)')
  out = tmp_path / 'out'
  code, summary, stdout, err = cli(
      ['--checkpoint', ckpt, '--input', CELEBA_TEST, '--limit', 3,
       '--evaluate', '--out', out, '--mask', 'center', *FAST], capsys)
  assert code == 0, err
  paths = data.list_image_files(CELEBA_TEST)[:3]
  originals, names = data.load_images(paths, RES)
  for name in names:
    for f in (out / f'{name}.png', out / 'raw' / f'{name}.png'):
      image = read_png(f)
      assert image.shape == (RES, RES, 3) and image.dtype == np.uint8
  # Grid: masked | G(z) | blended | original, one block a row (nearest to
  # square), 64 px upscaled 2x: a 20 px label strip, 8 px gaps between
  # blocks, 2 px between a block's cells.
  assert read_png(out / 'grid.png').shape == (20 + 8 + 3 * (128 + 8),
                                              8 + 4 * 128 + 3 * 2 + 8, 3)

  on_disk = json.loads((out / 'summary.json').read_text())
  for key in ('mse', 'psnr', 'psnr_mean', 'ssim', 'hole_mse', 'n_images',
              'method', 'loss', 'steps', 'restarts', 'checkpoint',
              'checkpoint_step'):
    assert key in on_disk, key
  assert on_disk['n_images'] == 3 and on_disk['steps'] == 2
  assert on_disk['loss'] == 'paper' and on_disk['checkpoint_step'] == 7
  assert on_disk == json.loads(json.dumps(summary))
  assert 0 < on_disk['mse'] and -1 <= on_disk['ssim'] <= 1
  # The hole is a quarter of the image and holds all the error.
  np.testing.assert_allclose(on_disk['hole_mse'], 4 * on_disk['mse'],
                             rtol=1e-4)
  with open(out / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['name'] for r in rows] == names
  columns = {'name', 'mse', 'psnr', 'ssim', 'hole_mse'}
  if identity.available():  # three photos of one person: tests/test_identity
    columns |= set(identity.PER_IMAGE_KEYS)
  assert set(rows[0]) == columns

  # The metrics describe the PNGs on disk; known pixels are the originals'.
  u8 = np.round((originals + 1) * 127.5)
  for row, name, orig in zip(rows, names, u8):
    written = read_png(out / f'{name}.png').astype(np.float64)
    np.testing.assert_allclose(float(row['mse']),
                               np.mean((written - orig)**2), rtol=1e-5)
    np.testing.assert_array_equal(written[:16], orig[:16])
  assert f'wrote 3 completed images to {out}' in stdout


def test_overwrite(ckpt, tmp_path, capsys):
  for i, name in enumerate(('a', 'b')):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          *FAST]
  assert cli(argv, capsys)[0] == 0
  written = sorted(p.relative_to(out) for p in out.rglob('*.png'))
  assert [str(p) for p in written] == ['a.png', 'b.png', 'grid.png',
                                       'raw/a.png', 'raw/b.png']
  stamp = (out / 'a.png').stat().st_mtime_ns
  code, _, _, err = cli(argv, capsys)
  assert code == 2
  assert err.strip() == (f'error: {out / "a.png"} already exists; pass '
                         '--overwrite to replace it, or choose another --out')
  assert (out / 'a.png').stat().st_mtime_ns == stamp
  code, _, _, err = cli(argv + ['--overwrite'], capsys)
  assert code == 0, err
  assert (out / 'a.png').stat().st_mtime_ns != stamp


def test_bad_inputs_write_nothing(ckpt, tmp_path, capsys, monkeypatch):
  good = tmp_path / 'good'
  write_image(good / 'face.png')
  corrupt = tmp_path / 'corrupt'
  write_image(corrupt / 'a.png')
  (corrupt / 'b.png').write_bytes(b'not an image at all')
  truncated = tmp_path / 'truncated'
  write_image(truncated / 'a.png')
  data_bytes = (truncated / 'a.png').read_bytes()
  (truncated / 'a.png').write_bytes(data_bytes[:len(data_bytes) // 2])
  small = tmp_path / 'small.png'
  write_image(small, size=32)
  small_mask = tmp_path / 'mask32.png'
  write_image(small_mask, size=32, mode='L', fill=255)
  mask_dir = tmp_path / 'masks'
  write_image(mask_dir / 'other.png', mode='L', fill=255)
  not_a_model = tmp_path / 'empty_model'
  not_a_model.mkdir()
  out = tmp_path / 'out'
  base = ['--checkpoint', ckpt, '--out', out, *FAST]

  cases = [
      (['--input', corrupt], ['b.png', 'cannot read image']),
      (['--input', truncated], ['a.png', 'cannot read image']),
      (['--input', tmp_path / 'missing'], ['missing', 'no such file']),
      (['--input', small], ['small.png', '32x32', '64x64']),
      (['--input', good, '--mask', small_mask], ['mask32.png', '32x32',
                                                 '64x64']),
      (['--input', good, '--mask', mask_dir], ["'face'", 'masks']),
      (['--input', good, '--mask', 'circle'], ['circle', 'center']),
      (['--input', good, '--checkpoint', tmp_path / 'nope'],
       ['nope', 'no such directory']),
      (['--input', good, '--checkpoint', not_a_model],
       ['empty_model', 'not a jaxinpaint model']),
      (['--input', good, '--evaluate', '--reference', good / 'face.png'],
       ['--evaluate', '--reference']),
      (['--input', good, '--steps', '0'], ['--steps must be >= 1']),
  ]
  for extra, fragments in cases:
    code, _, stdout, err = cli(base + extra, capsys)
    assert code == 2, (extra, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for fragment in fragments:
      assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists(), extra

  # No --checkpoint and no shipped model.
  monkeypatch.setattr(loading, 'DEFAULT_MODEL', tmp_path / 'none')
  code, _, _, err = cli(['--input', good, '--out', out], capsys)
  assert code == 2 and 'no shipped model is installed' in err
  assert '--checkpoint' in err and len(err.strip().splitlines()) == 1


def test_colour_modes_and_degenerate_masks(ckpt, tmp_path, capsys):
  rgba = write_image(tmp_path / 'in' / 'rgba.png', mode='RGBA', seed=1)
  write_image(tmp_path / 'in' / 'grey.png', mode='L', seed=2)
  # Per-image masks by stem: nothing to fill in rgba, no context in grey.
  write_image(tmp_path / 'masks' / 'rgba.png', mode='L', fill=255)
  write_image(tmp_path / 'masks' / 'grey.png', mode='L', fill=0)
  out = tmp_path / 'out'
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                         '--mask', tmp_path / 'masks', '--out', out, *FAST],
                        capsys)
  assert code == 0, err
  assert 'RGBA to RGB (alpha channel dropped): rgba.png' in err
  assert 'greyscale (L) to RGB: grey.png' in err
  assert 'rgba: the mask has no hole' in err
  assert 'output equals the input' in err
  assert 'grey: the mask has no known pixel' in err and 'pure generation' in err
  np.testing.assert_array_equal(read_png(out / 'rgba.png'), rgba[..., :3])
  np.testing.assert_array_equal(read_png(out / 'raw' / 'rgba.png'),
                                rgba[..., :3])
  assert read_png(out / 'grey.png').shape == (RES, RES, 3)


def test_reference_conditional_completion(ckpt, tmp_path, capsys):
  inputs = [write_image(tmp_path / 'in' / f'{n}.png', seed=i)
            for i, n in enumerate(('x', 'y'))]
  write_image(tmp_path / 'ref.jpg', seed=5)
  out = tmp_path / 'out'
  code, summary, _, err = cli(
      ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--reference',
       tmp_path / 'ref.jpg', '--mask', 'center', '--out', out, *FAST],
      capsys)
  assert code == 0, err
  assert summary['method'] == 'conditional'
  # masked | reference | G(z) | blended
  assert read_png(out / 'grid.png').shape == (20 + 8 + 2 * (128 + 8),
                                              8 + 4 * 128 + 3 * 2 + 8, 3)
  for name, original in zip(('x', 'y'), inputs):
    written = read_png(out / f'{name}.png')
    assert read_png(out / 'raw' / f'{name}.png').shape == (RES, RES, 3)
    # Outside the center square the face is kept from the input exactly.
    np.testing.assert_array_equal(written[:16], original[:16])
  assert not (out / 'metrics.csv').exists()


def test_tfds_input(monkeypatch):
  rng = np.random.default_rng(0)
  examples = [{'image': rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)}
              for _ in range(5)]
  calls = []

  def data_source(name, split, data_dir, download):
    calls.append((name, split, data_dir, download))
    return examples

  monkeypatch.setitem(sys.modules, 'tensorflow_datasets',
                      types.SimpleNamespace(data_source=data_source))
  reader, names = inputs.load_inputs('tfds:faces:test[:4]', RES, 3)
  # Never a download: an unprepared set must be an error, not hours of it.
  assert calls == [('faces', 'test[:4]', None, False)]
  assert len(reader) == 3
  images = reader.read(np.arange(3))  # read on demand, rows at a time
  assert images.shape == (3, RES, RES, 3) and images.dtype == np.float32
  assert names == ['faces_test_4__00000', 'faces_test_4__00001',
                   'faces_test_4__00002']
  want = decoding.crop_resize_array(examples[1]['image'], RES) / 127.5 - 1
  np.testing.assert_allclose(images[1], want, atol=1e-6)
  with pytest.raises(errors.InputError, match='tfds:NAME:SPLIT'):
    inputs.load_inputs('tfds:faces', RES, None)


def test_script_entry_point(ckpt, tmp_path):
  """inpaint.py as a user runs it: a one-line error and exit code 2."""
  small = tmp_path / 'small.png'
  write_image(small, size=32)
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'inpaint.py'), '--checkpoint', ckpt,
       '--input', str(small), '--out', str(tmp_path / 'out')],
      capture_output=True, text=True, cwd=tmp_path, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: image {small} is 32x32 but the model works at 64x64; crop or '
      'resize it to 64x64 first (inpaint.py never resizes, so outputs stay '
      'aligned with inputs and masks)')
  assert not (tmp_path / 'out').exists()


# ----------------------------------------------------------------------------
# Outputs that would destroy inputs, unwritable outputs, interrupted runs.


def files_under(folder):
  """The files under `folder`, but a run's record of its settings."""
  return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('*')
                if p.is_file() and p.name != outputs.RUN_FILE)


def assert_one_error_line(err, *fragments):
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


def test_an_output_that_is_an_input_is_refused(ckpt, tmp_path, capsys):
  folder = tmp_path / 'faces'
  write_image(folder / 'face.png', seed=1)
  write_image(tmp_path / 'masks' / 'face.png', mode='L', fill=255)
  original = (folder / 'face.png').read_bytes()
  (tmp_path / 'link').symlink_to(folder)  # the same folder by another name
  base = ['--checkpoint', ckpt, *FAST]
  cases = [
      ['--input', folder, '--out', folder, '--overwrite'],
      ['--input', folder, '--out', folder, '--resume'],
      ['--input', folder / 'face.png', '--out', tmp_path / 'link',
       '--overwrite'],
      ['--input', folder, '--out', folder],
  ]
  for extra in cases:
    code, _, _, err = cli(base + extra, capsys)
    assert code == 2, (extra, err)
    line = assert_one_error_line(err, 'is an input (image ', 'face.png',
                                 'choose another --out')
    # The file exists because it is the input: --overwrite is no remedy.
    assert '--overwrite' not in line
    assert (folder / 'face.png').read_bytes() == original
    assert files_under(folder) == ['face.png']
  # A mask file is an input too.
  write_image(tmp_path / 'in' / 'face.png', seed=2)
  code, _, _, err = cli(base + ['--input', tmp_path / 'in', '--mask',
                                tmp_path / 'masks', '--out', tmp_path / 'masks',
                                '--overwrite'], capsys)
  assert code == 2
  assert_one_error_line(err, 'is an input (mask ')
  assert files_under(tmp_path / 'masks') == ['face.png']


def test_an_unwritable_out_is_refused_before_any_work(ckpt, tmp_path, capsys,
                                                      monkeypatch):
  write_image(tmp_path / 'in' / 'a.png')
  blocker = tmp_path / 'a_file'
  blocker.write_text('in the way')
  read_only = tmp_path / 'read_only'
  read_only.mkdir()
  read_only.chmod(0o555)
  # root may write anywhere: tell it that this folder is read-only.
  access = os.access
  monkeypatch.setattr(os, 'access', lambda path, mode, **kw: (
      Path(path) != read_only and access(path, mode, **kw)))
  raw_blocked = tmp_path / 'raw_blocked'
  raw_blocked.mkdir()
  (raw_blocked / 'raw').write_text('a file where raw/ goes')
  # Nothing may be computed: the check comes before loading the model.
  monkeypatch.setattr(checkpoint, 'restore_raw', None)
  cases = [(blocker / 'sub', [f'--out {blocker / "sub"}', str(blocker),
                              'not a folder']),
           (read_only / 'out', [str(read_only), 'not writable']),
           (raw_blocked, [str(raw_blocked / 'raw'), 'not a folder'])]
  try:
    for out, fragments in cases:
      code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                             '--out', out, *FAST], capsys)
      assert code == 2, err
      assert_one_error_line(err, *fragments)
  finally:
    read_only.chmod(0o755)
  assert blocker.read_text() == 'in the way'
  assert files_under(read_only) == [] and files_under(raw_blocked) == ['raw']


def test_a_write_failure_keeps_the_finished_batches(ckpt, tmp_path, capsys,
                                                    monkeypatch):
  for i, name in enumerate('abcd'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  save = Image.Image.save
  saved = []

  def save_until_the_disk_is_full(self, fp, *args, **kwargs):
    saved.append(fp)
    # Batch 1: raw/a, a, raw/b, b and grid.png (its 2 rows are done); then
    # the second batch's first PNG, half written.
    if len(saved) == 6:
      Path(fp).write_bytes(b'\x89PNG half')
      raise OSError(28, 'No space left on device')
    return save(self, fp, *args, **kwargs)

  monkeypatch.setattr(Image.Image, 'save', save_until_the_disk_is_full)
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                         '--out', out, '--grid-max', '2', *FAST], capsys)
  assert code == 1, err
  assert err.strip().splitlines()[-1] == (
      f'error: cannot write {out / "raw" / "c.png"}: No space left on device; '
      f'2 of 4 images are complete in {out}/ (rerun with --resume to do the '
      'rest)')
  # The first batch and its grid are kept; no temporary file is left.
  assert files_under(out) == ['a.png', 'b.png', 'grid.png', 'raw/a.png',
                              'raw/b.png']


def test_ctrl_c_keeps_finished_batches_and_resume_does_the_rest(
    ckpt, tmp_path, capsys, monkeypatch):
  for i, name in enumerate('abcde'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--evaluate', '--grid-max', '2', *FAST]
  complete = completion.complete
  batches = []

  def complete_until_ctrl_c(*args, **kwargs):
    batches.append(np.asarray(args[1]).shape)
    if len(batches) == 2:  # the user presses Ctrl-C in the second batch
      os.kill(os.getpid(), signal.SIGINT)
    return complete(*args, **kwargs)

  monkeypatch.setattr(api, 'complete', complete_until_ctrl_c)
  code, _, _, err = cli(argv, capsys)
  assert code == 130
  assert 'Traceback' not in err
  assert err.strip().splitlines()[-1] == (
      f'error: interrupted: 2 of 5 images are complete in {out}/; rerun with '
      '--resume to do the rest')
  assert files_under(out) == ['a.png', 'b.png', 'grid.png', 'metrics.csv',
                              'raw/a.png', 'raw/b.png']
  with open(out / 'metrics.csv') as f:
    assert [r['name'] for r in csv.DictReader(f)] == ['a', 'b']
  stamps = {n: (out / f'{n}.png').stat().st_mtime_ns for n in 'ab'}

  # Without --resume the finished outputs are not touched.
  code, _, _, err = cli(argv, capsys)
  assert code == 2 and 'already exists' in err

  batches.clear()
  monkeypatch.setattr(api, 'complete', lambda *a, **k: (
      batches.append(1), complete(*a, **k))[1])
  code, summary, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert '2 of 5 images are finished' in err
  assert len(batches) == 2  # c, d and e only: two batches of 2
  assert {n: (out / f'{n}.png').stat().st_mtime_ns for n in 'ab'} == stamps
  assert summary['resumed'] == 2 and summary['n_images'] == 5
  with open(out / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['name'] for r in rows] == list('abcde')
  # The same numbers as one uninterrupted run.
  fresh = tmp_path / 'fresh'
  code, expected, _, err = cli(argv[:5] + [fresh] + argv[6:], capsys)
  assert code == 0, err
  assert (out / 'metrics.csv').read_text() == (
      fresh / 'metrics.csv').read_text()
  for key in ('mse', 'psnr', 'ssim', 'hole_mse', 'n_images'):
    assert summary[key] == expected[key], key
  assert not any('.tmp' in f for f in files_under(out))


def test_sigterm_mid_completion_exits_143_and_says_resume(
    ckpt, tmp_path, capsys, monkeypatch):
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  complete = completion.complete
  calls = []

  def complete_until_sigterm(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # a scheduler stops the job in the second batch
      os.kill(os.getpid(), signal.SIGTERM)
    return complete(*args, **kwargs)

  monkeypatch.setattr(api, 'complete', complete_until_sigterm)
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                         '--out', out, '--grid-max', '2', *FAST], capsys)
  assert code == 143 and 'Traceback' not in err
  assert err.strip().splitlines()[-1] == (
      f'error: terminated by SIGTERM: 2 of 3 images are complete in {out}/; '
      'rerun with --resume to do the rest')
  assert files_under(out) == ['a.png', 'b.png', 'grid.png', 'raw/a.png',
                              'raw/b.png']
  assert not (out / outputs.LOCK_FILE).exists()  # released


def test_resume_with_other_settings_is_refused(ckpt, tmp_path, capsys):
  for i, name in enumerate('abcd'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--evaluate', '--grid-max', '2', '--mask', 'center', *FAST]
  code, _, _, err = cli(argv, capsys)
  assert code == 0, err
  settings = json.loads((out / outputs.RUN_FILE).read_text())
  assert settings['--mask'] == 'center' and settings['--steps'] == 2
  assert settings['model step'] == 7 and settings['--seed'] == 0
  for name in 'cd':
    (out / f'{name}.png').unlink()
  before = {f: (out / f).read_bytes() for f in files_under(out)}
  for flags, message in [
      (['--mask', 'three_squares'],
       "--mask is 'three_squares' but the run in "
       f"{out}/ used 'center' (run.json)"),
      (['--steps', '3'], "--steps is 3 but the run in "),
      (['--seed', '1'], '--seed is 1 but'),
      (['--loss', 'yeh'], "--loss is 'yeh' but"),
      (['--restarts', '2'], '--restarts is 2 but'),
      (['--no-blend'], '--no-blend is True but'),
      (['--dtype', 'bfloat16'], "--dtype is 'bfloat16' but")]:
    code, _, _, err = cli(argv + flags + ['--resume'], capsys)
    assert code == 2, flags
    assert_one_error_line(err, message, 'start anew with --overwrite')
    assert {f: (out / f).read_bytes() for f in files_under(out)} == before
  # The same settings resume.
  code, summary, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert summary['resumed'] == 2 and summary['mask'] == 'center'


def test_resume_without_a_usable_record_is_refused(ckpt, tmp_path, capsys):
  """Without OUT/run.json the finished images cannot be checked against the
  resumed run's settings: it would keep them beside images of others."""
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--grid-max', '1', *FAST]
  code, _, _, err = cli(argv + ['--mask', 'center'], capsys)
  assert code == 0, err
  (out / 'c.png').unlink()
  record = out / outputs.RUN_FILE
  before = {f: (out / f).read_bytes() for f in files_under(out)}
  for content, says in [
      (None, f'--resume: {out}/ holds outputs of an earlier run but no '
             'run.json'),
      ('[]', f'--resume: {record} records no settings'),
      ('{}', f'--resume: {record} records no settings'),
      ('{"--mask": ', f'--resume: cannot read {record}'),
      # A record without some setting cannot vouch for it.
      ('{"--mask": "three_squares"}', f'--resume: {record} does not record '
                                      '--checkpoint')]:
    if content is None:
      record.unlink()
    else:
      record.write_text(content)
    code, _, _, err = cli(argv + ['--mask', 'three_squares', '--resume'],
                          capsys)
    assert code == 2, (content, err)
    assert_one_error_line(err, says, 'start anew with --overwrite or another '
                          '--out')
    assert {f: (out / f).read_bytes() for f in files_under(out)} == before
    assert (record.read_text() if record.exists() else None) == content
  # With nothing written yet there is nothing to check: --resume starts.
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                         '--out', tmp_path / 'new', '--resume', *FAST],
                        capsys)
  assert code == 0, err


def test_sigterm_before_grid_png_says_which_images_resume_does_again(
    ckpt, tmp_path, capsys, monkeypatch):
  """grid.png is written once its rows are all done, from their G(z), which
  no other file keeps: until then a resume completes them again, and says
  so."""
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          *FAST]  # --grid-max 64: all three are rows of the grid
  complete = completion.complete
  calls = []

  def complete_until_sigterm(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return complete(*args, **kwargs)

  monkeypatch.setattr(api, 'complete', complete_until_sigterm)
  code, _, _, err = cli(argv, capsys)
  assert code == 143 and 'Traceback' not in err
  assert err.strip().splitlines()[-1] == (
      f'error: terminated by SIGTERM: 2 of 3 images are complete in {out}/; '
      'rerun with --resume to do the rest; it completes those 2 again: '
      'grid.png, not written yet, needs their G(z), which no file keeps')
  assert files_under(out) == ['a.png', 'b.png', 'raw/a.png', 'raw/b.png']
  calls.clear()
  monkeypatch.setattr(api, 'complete', complete)
  code, summary, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert ('note: --resume: grid.png is missing; it shows the G(z) of the '
          'first 3 images (--grid-max), which no other file keeps: '
          'completing a, b again') in err
  assert summary['resumed'] == 0 and 'finished in' not in err
  assert files_under(out) == ['a.png', 'b.png', 'c.png', 'grid.png',
                              'raw/a.png', 'raw/b.png', 'raw/c.png']


def test_a_second_run_on_the_same_out_is_refused(ckpt, tmp_path, capsys,
                                                 monkeypatch):
  import socket  # pylint: disable=g-import-not-at-top
  write_image(tmp_path / 'in' / 'a.png')
  out = tmp_path / 'out'
  out.mkdir()
  lock = out / outputs.LOCK_FILE
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          *FAST]
  host = socket.gethostname()
  # A run in progress: a live process (this one's parent), or one on
  # another host (whose processes cannot be checked from here).
  for holder in ({'pid': os.getppid(), 'host': host},
                 {'pid': 2**22 + 1, 'host': host + '-other'}):
    lock.write_text(json.dumps(holder))
    code, _, _, err = cli(argv, capsys)
    assert code == 2
    assert_one_error_line(
        err, f'--out {out} is in use by another run (pid {holder["pid"]} on '
        f'{holder["host"]}); wait for it to end or choose another --out')
    assert files_under(out) == [outputs.LOCK_FILE]  # the other run's
    assert json.loads(lock.read_text()) == holder

  # The lock of a run that was killed: taken over with a note.
  gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  lock.write_text(json.dumps({'pid': int(gone.stdout), 'host': host}))
  held = []
  complete = completion.complete
  monkeypatch.setattr(api, 'complete', lambda *a, **k: (
      held.append(json.loads(lock.read_text())), complete(*a, **k))[1])
  code, _, _, err = cli(argv, capsys)
  assert code == 0, err
  assert f'took over {lock} from pid {int(gone.stdout)}' in err
  assert held == [{'pid': os.getpid(), 'host': host}]  # held while running
  assert not lock.exists()  # released at the end
  assert files_under(out) == ['a.png', 'grid.png', 'raw/a.png']

  # Released after an error found with the lock held (an input named like
  # grid.png), and an --out it made is removed again.
  write_image(tmp_path / 'grid.png')
  fresh = tmp_path / 'fresh'
  code, _, _, err = cli(['--checkpoint', ckpt, '--input',
                         tmp_path / 'grid.png', '--out', fresh / 'out',
                         *FAST], capsys)
  assert code == 2 and "an input image is named 'grid'" in err
  assert not fresh.exists()


def test_file_names_that_are_not_utf8(ckpt, tmp_path, capsys):
  raw_name = b'caf\xe9'  # Latin-1, not valid UTF-8
  folder = tmp_path / 'in'
  write_image(folder / os.fsdecode(raw_name + b'.png'))
  write_image(folder / 'plain.png', seed=3)
  out = tmp_path / 'out'
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', folder, '--out', out,
                         '--evaluate', *FAST], capsys)
  assert code == 0, err
  # The files keep the input's bytes; the CSV says \xe9 in valid UTF-8.
  assert os.path.isfile(os.path.join(os.fsencode(out), raw_name + b'.png'))
  with open(out / 'metrics.csv', encoding='utf-8') as f:
    assert [r['name'] for r in csv.DictReader(f)] == ['caf\\xe9', 'plain']
  json.loads((out / 'summary.json').read_text(encoding='utf-8'))
  assert not any('.tmp' in f for f in files_under(out))


def test_out_of_range_flags_and_unusable_models(ckpt, tmp_path, capsys):
  good = tmp_path / 'good'
  write_image(good / 'face.png')
  untrained = tmp_path / 'untrained'
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = RES, 4, 16
  checkpoint.export_inference(untrained, c, models.random_variables(c.model),
                              0)
  bad_json = tmp_path / 'bad_json'
  bad_json.mkdir()
  (bad_json / 'config.json').write_text('{"model": ')
  out = tmp_path / 'out'
  cases = [
      (['--seed', str(2**63)], [f'--seed must be >= 0 and < 2**32, got '
                                f'{2**63}']),
      (['--steps', str(10**20)], ['--steps must be <= 1000000']),
      (['--tune-steps', str(10**11)], ['--tune-steps must be <= 1000000']),
      (['--checkpoint', untrained], [str(untrained), 'step 0',
                                     'never trained']),
      (['--checkpoint', bad_json], [str(bad_json / 'config.json'),
                                    'not a valid config file']),
      (['--resume', '--overwrite'], ['--resume', '--overwrite']),
  ]
  for extra, fragments in cases:
    code, _, _, err = cli(['--checkpoint', ckpt, '--input', good, '--out', out,
                           *FAST, *extra], capsys)
    assert code == 2, (extra, err)
    assert_one_error_line(err, *fragments)
    assert not out.exists()


def test_a_damaged_model_is_refused(ckpt, tmp_path, capsys):
  write_image(tmp_path / 'in' / 'a.png')
  damaged = tmp_path / 'damaged'
  shutil.copytree(ckpt, damaged)
  sums = json.loads((damaged / 'checksums.json').read_text())
  sums['sha256']['g_params/Dense_0/kernel'] = '0' * 64
  (damaged / 'checksums.json').write_text(json.dumps(sums))
  out = tmp_path / 'out'
  code, _, _, err = cli(['--checkpoint', damaged, '--input', tmp_path / 'in',
                         '--out', out, *FAST], capsys)
  assert code == 2
  assert err.strip().splitlines()[-1] == (
      f'error: {damaged}: array g_params/Dense_0/kernel does not match its '
      'SHA-256 in checksums.json: the model files are damaged; export or '
      'copy the model again')
  assert not out.exists()


def test_run_leaves_the_callers_args_and_logging_alone(ckpt, tmp_path,
                                                       capsys):
  from absl import logging  # pylint: disable=g-import-not-at-top
  write_image(tmp_path / 'in' / 'a.png', seed=3)
  args = inpaint.build_parser().parse_args(
      ['--checkpoint', ckpt, '--input', str(tmp_path / 'in'), '--out',
       str(tmp_path / 'out'), '--batch-size', '2'])
  before = dict(vars(args))
  verbosity = logging.get_verbosity()
  summary = inpaint.run(args, inpaint.prepare(args))
  capsys.readouterr()
  # --steps unset: the CPU default is used, and args still say "unset".
  assert summary['steps'] == runner.CPU_DEFAULT_STEPS
  assert vars(args) == before and args.steps is None
  assert logging.get_verbosity() == verbosity


def test_dtype_and_devices_flags(ckpt, tmp_path, capsys):
  for i, name in enumerate(('a', 'b')):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', *FAST]
  # float32 is the model's own dtype: the default run's bytes.
  for out, extra in (('default', []),
                     ('float32', ['--dtype', 'float32', '--devices', '1'])):
    code, summary, _, err = cli(argv + ['--out', tmp_path / out, *extra],
                                capsys)
    assert code == 0, err
    assert summary['dtype'] == 'float32'
  for name in ('a.png', 'b.png', 'raw/a.png'):
    assert ((tmp_path / 'default' / name).read_bytes()
            == (tmp_path / 'float32' / name).read_bytes())

  code, summary, _, err = cli(argv + ['--out', tmp_path / 'bf16', '--dtype',
                                      'bfloat16'], capsys)
  assert code == 0, err
  assert summary['dtype'] == 'bfloat16'
  # The library with Options(dtype='bfloat16') on the same inputs.
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.completion import batched
  from jaxinpaint.ops import metrics
  model = loading.load_model(ckpt)
  images, names = inputs.load_inputs(str(tmp_path / 'in'), RES)
  mask = inputs.load_masks('center', names, RES, 0)
  expected = batched.inpaint_batches(
      model, images, mask, np.arange(2),
      spec=completion.get_loss('paper'), batch_size=2, seed=0,
      options=completion.Options(steps=2, dtype='bfloat16'), progress=False)
  bf16 = np.stack([read_png(tmp_path / 'bf16' / f'{n}.png') for n in names])
  np.testing.assert_array_equal(bf16, metrics.to_uint8(expected['blended']))
  f32 = np.stack([read_png(tmp_path / 'float32' / f'{n}.png') for n in names])
  assert (bf16 != f32).any()  # bf16 activations move the result

  # Bad values: one error line, exit code 2, nothing written.
  for devices, says in (('2', '--devices: got 2, but this process has 1 '
                         'local cpu device; expected a count from 1 to 1'),
                        ('0', '--devices must be >= 1, got 0')):
    out = tmp_path / f'devices{devices}'
    code, _, _, err = cli(argv + ['--out', out, '--devices', devices],
                          capsys)
    assert code == 2 and err == f'error: {says}\n'
    assert not out.exists()
  code, _, _, err = cli(argv + ['--out', tmp_path / 'x', '--dtype', 'int8'],
                        capsys)
  assert code == 2 and "invalid choice: 'int8'" in err


def test_tune_steps_flag(ckpt, tmp_path, capsys):
  for i, name in enumerate(('a', 'b')):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', *FAST]
  code, summary, _, err = cli(argv + ['--out', tmp_path / 'tuned',
                                      '--tune-steps', '2'], capsys)
  assert code == 0, err
  assert summary['tune_steps'] == 2 and 'then 2 steps tuning G' in err
  # The library with Options(tuning=Tuning(steps=2)) on the same inputs.
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.completion import batched
  from jaxinpaint.ops import metrics
  model = loading.load_model(ckpt)
  images, names = inputs.load_inputs(str(tmp_path / 'in'), RES)
  mask = inputs.load_masks('center', names, RES, 0)
  expected = batched.inpaint_batches(
      model, images, mask, np.arange(2),
      spec=completion.get_loss('paper'), batch_size=2, seed=0,
      options=completion.Options(steps=2, tuning=completion.Tuning(steps=2)),
      progress=False)
  assert expected['tune_trace'].shape == (2, 2)
  tuned = np.stack([read_png(tmp_path / 'tuned' / f'{n}.png') for n in names])
  np.testing.assert_array_equal(tuned, metrics.to_uint8(expected['blended']))

  out = tmp_path / 'negative'
  code, _, _, err = cli(argv + ['--out', out, '--tune-steps', '-1'], capsys)
  assert code == 2 and err == 'error: --tune-steps must be >= 0, got -1\n'
  assert not out.exists()


def test_help_explains_devices_dtype_and_processes(capsys):
  with pytest.raises(SystemExit):
    inpaint.main(['--help'])
  text = ' '.join(capsys.readouterr().out.split())
  assert '--devices N complete each batch on the first N local devices' in text
  assert 'default: all of them' in text
  assert '--dtype {float32,bfloat16}' in text
  for flag in ('--coordinator_address', '--num_processes', '--process_id',
               '--multiprocess', '--process-timeout'):
    assert flag in text
  assert ('process 0 then writes grid.png, metrics.csv and summary.json for '
          'all') in text


def test_images_over_the_bomb_limit_are_one_line_and_no_warning(
    ckpt, tmp_path, capsys, monkeypatch, recwarn):
  # Pillow's limit lowered to one 64x64 image: 80x80 is over it (Pillow
  # warns, and would decode), 91x91 over twice it (Pillow raises).
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', RES * RES)
  good = tmp_path / 'face.png'
  write_image(good)
  out = tmp_path / 'out'
  for side in (80, 91):
    big = tmp_path / f'big{side}.png'
    write_image(big, size=side)
    for extra in (['--input', big], ['--input', good, '--mask', big],
                  ['--input', good, '--reference', big]):
      code, _, _, err = cli(['--checkpoint', ckpt, '--out', out, *FAST,
                             *extra], capsys)
      assert code == 2, (extra, err)
      lines = err.strip().splitlines()
      assert len(lines) == 1 and lines[0].startswith('error: '), err
      for fragment in (big.name, f'{side * side:,} pixels',
                       f'limit of {RES * RES:,} pixels', 'resize it'):
        assert fragment in lines[0], (fragment, lines[0])
      assert not out.exists(), extra
  assert not [w for w in recwarn
              if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_reference_folder_is_called_a_folder(ckpt, tmp_path, capsys):
  write_image(tmp_path / 'face.png')
  (tmp_path / 'refs').mkdir()
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'face.png',
                         '--reference', tmp_path / 'refs', '--out',
                         tmp_path / 'out', *FAST], capsys)
  assert code == 2, err
  assert err.strip() == (f'error: reference {tmp_path / "refs"} is a folder, '
                         'not an image file; give one image file')
