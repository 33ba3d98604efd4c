"""jaxinpaint-demo: the page's inputs, its API (gradio_client) and the page
itself in headless Chromium (Selenium with Debian's chromium-driver).

The server runs once per module in a subprocess with the CPU preview model;
the API test compiles its search, which the browser test then reuses.
"""
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from helpers import REPO
from jaxinpaint import data, demo, errors
from jaxinpaint.data import masks

EXAMPLE = demo.FACE_EXAMPLES[0]
RES = 64  # celeba64_cpu
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'


def crop_uint8(path=EXAMPLE, res=RES):
  """The crop the model sees, as the training reader makes it."""
  return demo.to_uint8(data.load_images([str(path)], res)[0][0])


def write(path, image: Image.Image, **kwargs):
  image.save(path, **kwargs)
  return str(path)


# ---------------------------------------------------------------------------
# The page's inputs, without a server.


def test_colour_modes_are_read_as_training_reads_them(tmp_path):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (RES, RES, 3), np.uint8)
  # RGBA: alpha dropped, the stored colours kept.
  rgba = np.concatenate([rgb, rng.integers(0, 256, (RES, RES, 1), np.uint8)],
                        -1)
  got = demo.load_crop(write(tmp_path / 'a.png', Image.fromarray(rgba)), RES)
  np.testing.assert_array_equal(demo.to_uint8(got), rgb)
  # 16-bit greyscale: scaled by 65535 (v / 257 rounded), on all three
  # channels.
  grey16 = rng.integers(0, 65536, (RES, RES)).astype(np.uint16)
  got = demo.load_crop(write(tmp_path / 'g.png', Image.fromarray(grey16)),
                       RES)
  np.testing.assert_array_equal(
      demo.to_uint8(got), np.repeat(np.round(grey16 / 257)[..., None], 3, -1))
  # CMYK JPEG: PIL's conversion, to JPEG rounding.
  cmyk = Image.fromarray(rgb).convert('CMYK')
  path = write(tmp_path / 'c.jpg', cmyk, quality=100)
  expected = np.asarray(Image.open(path).convert('RGB')).astype(int)
  got = demo.to_uint8(demo.load_crop(path, RES)).astype(int)
  assert np.abs(got - expected).max() <= 2
  # Any size: the center square, resized (a 3:1 strip keeps its middle).
  wide = np.zeros((RES, 3 * RES, 3), np.uint8)
  wide[:, RES:2 * RES] = rgb
  got = demo.load_crop(write(tmp_path / 'w.png', Image.fromarray(wide)), RES)
  np.testing.assert_array_equal(demo.to_uint8(got), rgb)


def test_bad_files_give_one_clear_line(tmp_path):
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  with pytest.raises(errors.PageError, match='not an image this page can read'):
    demo.load_crop(text, RES)
  png = io.BytesIO()
  Image.fromarray(np.full((200, 200, 3), 9, np.uint8)).save(png, 'PNG')
  cut = tmp_path / 'cut.png'
  cut.write_bytes(png.getvalue()[:len(png.getvalue()) // 2])
  with pytest.raises(errors.PageError, match='truncated or damaged'):
    demo.load_crop(cut, RES)
  huge = write(tmp_path / 'huge.png', Image.new('1', (10_000, 10_000)))
  with pytest.raises(errors.PageError, match=r'10000x10000 \(100 megapixels\)'):
    demo.load_crop(huge, RES)
  with pytest.raises(errors.PageError, match='no image'):
    demo.load_crop(None, RES)


def test_float_and_oversized_uploads_follow_the_file_rules(tmp_path,
                                                           monkeypatch):
  # Float TIFFs are taken in [0, 1], as inpaint.py reads them; outside it
  # they are refused with their range, as a mask file too.
  grey = demo.load_crop(write(tmp_path / 'f.tif', Image.fromarray(
      np.full((RES, RES), 0.6, np.float32))), RES)
  np.testing.assert_array_equal(demo.to_uint8(grey), 153)  # 0.6 * 255
  bytes_ = write(tmp_path / 'b.tif', Image.fromarray(
      np.full((RES, RES), 200, np.float32)))
  with pytest.raises(errors.PageError,
                     match=r'^the image \(b\.tif\) has float .* \[200, 200\], '
                     r'outside \[0, 1\]'):
    demo.load_crop(bytes_, RES)
  with pytest.raises(errors.PageError,
                     match=r'^the mask file \(b\.tif\) has float .*\[0, 1\]'):
    demo.mask_file(bytes_, RES, None)
  # Over Pillow's decompression-bomb limit (lowered here): one line.
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', RES * RES)
  big = write(tmp_path / 'big.png', Image.new('L', (RES + 1, RES + 1)))
  with pytest.raises(errors.PageError, match=r'^the mask file \(big\.png\) '
                     r'is 65x65 .*limit of 4,096 pixels'):
    demo.mask_file(big, RES, None)


def test_painted_layers_become_the_hole():
  # The editor shows the 64 px crop at 256 px (4x): a brush stroke over
  # display rows 40-47 and columns 100-161 covers model rows 10-11 and
  # columns 25-40 (161 // 4 = 40), partly covered pixels included.
  layer = np.zeros((256, 256, 4), np.uint8)
  layer[40:48, 100:162] = (255, 0, 255, 255)
  layer[200, 200, 3] = 1  # a faint brush edge still makes a hole
  mask = demo.painted_mask([layer], RES)
  expected = np.ones((RES, RES, 1), np.float32)
  expected[10:12, 25:41] = 0
  expected[50, 50] = 0
  np.testing.assert_array_equal(mask, expected)
  assert demo.painted_mask([], RES).all()


def test_page_masks_and_their_errors(tmp_path):
  center = demo.page_mask('center', RES)
  np.testing.assert_array_equal(center, masks.center_mask(1, RES, RES)[0])
  np.testing.assert_array_equal(demo.page_mask('three squares', RES),
                                masks.three_squares_mask(1, RES, RES)[0])
  with pytest.raises(errors.PageError, match='no hole painted'):
    demo.page_mask('painted', RES, layers=[])
  black = write(tmp_path / 'black.png', Image.new('L', (RES, RES), 0))
  with pytest.raises(errors.PageError, match='covers the whole image'):
    demo.page_mask('mask file', RES, mask_path=black)
  white = write(tmp_path / 'white.png', Image.new('L', (RES, RES), 255))
  with pytest.raises(errors.PageError, match='has no hole'):
    demo.page_mask('mask file', RES, mask_path=white)
  # A mask of the image's own size is cropped and resized with it: a
  # 3:1 image keeps its middle third, where this mask has its hole.
  image = write(tmp_path / 'wide.png', Image.new('RGB', (3 * RES, RES)))
  wide = np.full((RES, 3 * RES), 255, np.uint8)
  wide[16:48, RES + 16:RES + 48] = 0
  mask_path = write(tmp_path / 'wide_mask.png', Image.fromarray(wide))
  np.testing.assert_array_equal(
      demo.page_mask('mask file', RES, mask_path=mask_path, image_path=image),
      center)
  odd = write(tmp_path / 'odd.png', Image.new('L', (10, 20), 255))
  with pytest.raises(errors.PageError, match=r"10x20: expected the image's "):
    demo.page_mask('mask file', RES, mask_path=odd, image_path=image)


def test_parts_mask_and_numbers():
  keep = demo.parts_mask(['left eye', 'mouth'], RES)
  assert keep[20:36, 12:28].max() == 0 and keep[40:56, 24:40].max() == 0
  assert keep.sum() == RES * RES - 2 * 16 * 16  # the right eye is kept
  with pytest.raises(errors.PageError, match='parts: pick one or more'):
    demo.parts_mask([], RES)
  assert demo.checked_numbers(5.0, 2, 7, 100) == (5, 2, 7)
  with pytest.raises(errors.PageError, match='steps: expected a whole number '
                     'from 1 to 100, got 101'):
    demo.checked_numbers(101, 1, 0, 100)


def test_command_line_errors_are_one_line(capsys):
  pytest.importorskip('gradio')
  for argv, message in (
      (['--checkpoint', 'nope'], 'error: --checkpoint: nope: no such '
       'directory (nor a shipped model: '),
      (['--max-steps', '0'], 'error: --max-steps must be from 1 to '),
      (['--port', '70000'], 'error: --port must be from 0 to 65535')):
    with pytest.raises(SystemExit) as e:
      demo.main(argv + ['--no-warm-up'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count('\n') == 1, err


# ---------------------------------------------------------------------------
# The server.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  pytest.importorskip('gradio')
  port = free_port()
  log = tmp_path_factory.mktemp('demo') / 'server.log'
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             GRADIO_ANALYTICS_ENABLED='False')
  with open(log, 'w') as out:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'jaxinpaint.demo.app', '--port', str(port),
         '--checkpoint', 'celeba64_cpu', '--no-warm-up', '--max-steps', '50'],
        cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
  url = f'http://127.0.0.1:{port}/'
  try:
    deadline = time.time() + 300
    while True:
      if proc.poll() is not None:
        pytest.fail(f'the demo exited with {proc.returncode}: '
                    f'{log.read_text()[-2000:]}')
      try:
        urllib.request.urlopen(url, timeout=5).read()
        break
      except OSError:
        if time.time() > deadline:
          pytest.fail(f'the demo did not serve {url} in 300 s: '
                      f'{log.read_text()[-2000:]}')
        time.sleep(1)
    yield url
  finally:
    proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()


def check_result(blended, mask, crop):
  """Same size as the crop, known pixels equal to it, the hole changed."""
  assert blended.shape == crop.shape == (RES, RES, 3)
  known = mask[..., 0] > 0.5
  np.testing.assert_array_equal(blended[known], crop[known])
  change = np.abs(blended[~known].astype(int) - crop[~known]).mean()
  assert change > 5, change


def read_png(path):
  return np.asarray(Image.open(path).convert('RGB'))


def test_api_streams_and_completes(server, tmp_path):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  client = Client(server, verbose=False)
  job = client.submit(handle_file(str(EXAMPLE)), 'celeba64_cpu', None,
                      'center', None, 'paper', 12, 1, 0,
                      api_name='/complete')
  outputs = job.result(timeout=300) and job.outputs()
  statuses = [o[-1] for o in outputs]
  # A preview every 10 steps, then the search's own result.
  assert statuses[0] == 'starting the search...'
  assert any(s.startswith('step 10 of 12') for s in statuses), statuses
  assert statuses[-1].startswith('done: 12 steps')
  masked, generated, overlay, blended, trace, files, _ = outputs[-1]
  crop = crop_uint8()
  mask = masks.center_mask(1, RES, RES)[0]
  check_result(read_png(blended), mask, crop)
  check_result(read_png(overlay), mask, crop)
  assert read_png(generated).shape == (RES, RES, 3)
  shown = read_png(masked)  # the input the model sees, hole grey
  np.testing.assert_array_equal(shown[mask[..., 0] > 0.5],
                                crop[mask[..., 0] > 0.5])
  assert (shown[mask[..., 0] < 0.5] == 128).all()
  assert [row[0] for row in trace['data']] == list(range(1, 13))
  assert sorted(os.path.basename(f) for f in files) == [
      'blended.png', 'generated.png', 'raw_overlay.png']
  by_name = {os.path.basename(f): read_png(f) for f in files}
  np.testing.assert_array_equal(by_name['blended.png'], read_png(blended))


def test_api_bad_inputs_say_what_is_wrong_and_the_server_goes_on(
    server, tmp_path):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  client = Client(server, verbose=False)
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  huge = write(tmp_path / 'huge.png', Image.new('1', (10_000, 10_000)))
  black = write(tmp_path / 'black.png', Image.new('L', (RES, RES), 0))
  example = handle_file(str(EXAMPLE))
  cases = [
      ((handle_file(str(text)), 'center', None), 'not an image this page'),
      ((handle_file(huge), 'center', None), '100 megapixels'),
      ((example, 'painted', None), 'no hole painted'),
      ((example, 'mask file', handle_file(black)), 'covers the whole image'),
  ]
  for (image, hole, mask_file), message in cases:
    with pytest.raises(Exception, match=message):
      client.predict(image, 'celeba64_cpu', None, hole, mask_file, 'paper',
                     3, 1, 0, api_name='/complete')
  with pytest.raises(Exception, match='greater than maximum value 50'):
    client.predict(example, 'celeba64_cpu', None, 'center', None, 'paper',
                   51, 1, 0, api_name='/complete')
  # Still serving.
  out = client.predict(example, 'celeba64_cpu', None, 'center', None,
                       'paper', 2, 1, 0, api_name='/complete')
  assert out[-1].startswith('done: 2 steps')


def test_a_second_visitor_waits_in_the_queue(server):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  from gradio_client.utils import Status  # pylint: disable=g-import-not-at-top
  args = (handle_file(str(EXAMPLE)), 'celeba64_cpu', None, 'center', None,
          'paper', 40, 1, 0)
  first = Client(server, verbose=False).submit(*args, api_name='/complete')
  while first.status().code not in (Status.PROCESSING, Status.ITERATING,
                                    Status.PROGRESS, Status.FINISHED):
    time.sleep(0.05)
  second = Client(server, verbose=False).submit(*args, api_name='/complete')
  seen = []
  while not second.done():
    status = second.status()
    seen.append((status.code, status.rank, first.done()))
    time.sleep(0.05)
  # While the first search ran, the second waited with its place (0: next).
  assert (Status.IN_QUEUE, 0, False) in seen, seen
  assert second.result()[-1].startswith('done: 40 steps')
  assert first.result()[-1].startswith('done: 40 steps')


def test_api_conditional_completion(server):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  client = Client(server, verbose=False)
  face, ref = demo.FACE_EXAMPLES[1], demo.REFERENCE
  out = client.predict(handle_file(str(face)), handle_file(str(ref)),
                       ['left eye', 'mouth'], 'celeba64_cpu', 3, 0,
                       api_name='/conditional')
  shown_face, shown_ref, kept, generated, blended, status = out
  assert status == 'done'
  crop = crop_uint8(face)
  np.testing.assert_array_equal(read_png(shown_face), crop)
  np.testing.assert_array_equal(read_png(shown_ref), crop_uint8(ref))
  keep = demo.parts_mask(['left eye', 'mouth'], RES)
  # Kept pixels are the face's; the parts (left eye, mouth) are new.
  check_result(read_png(blended), keep, crop)
  assert (read_png(kept)[keep[..., 0] < 0.5] == 128).all()
  assert read_png(generated).shape == (RES, RES, 3)


@pytest.fixture
def browser():
  if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f'{CHROMIUM} or {CHROMEDRIVER} is absent (apt-get install '
                'chromium chromium-driver; .ci/run does)')
  webdriver = pytest.importorskip('selenium.webdriver')
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
              '--window-size=1400,1500'):
    options.add_argument(arg)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  yield driver
  driver.quit()


def fetch_image(url):
  return np.asarray(Image.open(io.BytesIO(
      urllib.request.urlopen(url, timeout=30).read())).convert('RGB'))


def test_page_in_a_browser(server, browser, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  find = lambda css: browser.find_element(By.CSS_SELECTOR, css)
  wait = WebDriverWait(browser, 240)
  browser.get(server)
  wait.until(lambda b: b.find_elements(By.CSS_SELECTOR,
                                       '#upload input[type=file]'))
  # Upload a shipped example: the page shows the 64x64 crop it will use.
  find('#upload input[type=file]').send_keys(str(EXAMPLE))
  wait.until(lambda b: '64x64 crop' in find('#note').text)
  find('#hole input[value="center"]').click()
  steps = find('#steps input')
  steps.clear()
  steps.send_keys('5')
  find('#run').click()
  wait.until(lambda b: find('#status').text.startswith('done: 5 steps')
             or b.find_elements(By.CSS_SELECTOR, '.toast-body'))
  errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR,
                                                  '.toast-body')]
  assert not errors, errors
  blended = fetch_image(find('#blended img').get_attribute('src'))
  check_result(blended, masks.center_mask(1, RES, RES)[0], crop_uint8())
  browser.save_screenshot(str(tmp_path / 'page.png'))
