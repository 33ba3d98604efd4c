"""The top ops by time in a jax.profiler trace (read on any machine).

Reads the Perfetto/Chrome JSON that `jax.profiler.trace(...,
create_perfetto_trace=True)` writes (`*.trace.json.gz`), from the trace
folder, a .tar/.tar.gz of it, or the file itself. For each process of the
trace (a GPU's streams, the host's threads) it sums the durations of the
complete events by name and prints the largest, with their share of that
process's summed time, and how busy the process was: summed time (nested
events once) over the span from its first event to its last one — on a
GPU, the gap to 100% is time the device waited for work.

  python bench/trace_top_ops.py trace.tar.gz
  python bench/trace_top_ops.py /tmp/trace --top 30 --process GPU
"""
import argparse
import collections
import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

TRACE_SUFFIX = '.trace.json.gz'


def _load(data):
  return json.loads(gzip.decompress(data))


def load_traces(path):
  """The trace JSON objects found at `path` (folder, tar or file)."""
  path = Path(path)
  if path.is_dir():
    files = sorted(path.rglob('*' + TRACE_SUFFIX))
    return [_load(f.read_bytes()) for f in files]
  if path.name.endswith(TRACE_SUFFIX):
    return [_load(path.read_bytes())]
  if tarfile.is_tarfile(path):
    with tarfile.open(path) as tar:
      return [_load(tar.extractfile(m).read()) for m in tar.getmembers()
              if m.isfile() and m.name.endswith(TRACE_SUFFIX)]
  raise ValueError(f'{path}: expected a trace folder, a tar of one or a '
                   f'{TRACE_SUFFIX} file')


def _busy(intervals):
  """Length of the union of (start, end) intervals."""
  total, end = 0.0, float('-inf')
  for s, e in sorted(intervals):
    if e <= end:
      continue
    total += e - max(s, end)
    end = e
  return total


def summarize(trace):
  """{process name: {'ops': Counter name -> µs, 'counts': Counter,
  'busy_us', 'span_us'}} of a trace's complete ('X') events."""
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  names = {e['pid']: e.get('args', {}).get('name', str(e['pid']))
           for e in events
           if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  out = {}
  intervals = collections.defaultdict(list)
  for e in events:
    if e.get('ph') != 'X' or 'dur' not in e:
      continue
    process = names.get(e.get('pid'), str(e.get('pid')))
    entry = out.setdefault(process, {'ops': collections.Counter(),
                                     'counts': collections.Counter()})
    entry['ops'][e.get('name', '?')] += float(e['dur'])
    entry['counts'][e.get('name', '?')] += 1
    intervals[process].append((float(e['ts']), float(e['ts'] + e['dur'])))
  for process, entry in out.items():
    spans = intervals[process]
    entry['busy_us'] = _busy(spans)
    entry['span_us'] = max(e for _, e in spans) - min(s for s, _ in spans)
  return out


def report(summary, top=20, process_filter=None):
  lines = []
  for process, entry in sorted(summary.items()):
    if process_filter and process_filter.lower() not in process.lower():
      continue
    total = sum(entry['ops'].values())
    lines.append(f'== {process}: {len(entry["counts"])} distinct ops, '
                 f'{sum(entry["counts"].values())} events, busy '
                 f'{entry["busy_us"] / 1e3:.1f} ms of a '
                 f'{entry["span_us"] / 1e3:.1f} ms span '
                 f'({100 * entry["busy_us"] / max(entry["span_us"], 1e-9):.0f}'
                 '%)')
    lines.append(f'{"ms":>10} {"share":>6} {"count":>7}  op')
    for name, us in entry['ops'].most_common(top):
      lines.append(f'{us / 1e3:10.2f} {100 * us / total:5.1f}% '
                   f'{entry["counts"][name]:7d}  {name[:110]}')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[2:]))
  parser.add_argument('trace', help='trace folder, .tar(.gz) or '
                      f'{TRACE_SUFFIX}')
  parser.add_argument('--top', type=int, default=20)
  parser.add_argument('--process', help='only processes whose name holds '
                      'this, e.g. GPU')
  args = parser.parse_args(argv)
  try:
    traces = load_traces(args.trace)
  except (OSError, ValueError, tarfile.TarError) as e:
    sys.exit(f'{args.trace}: {e}')
  if not traces:
    sys.exit(f'{args.trace}: no {TRACE_SUFFIX} inside (was the trace made '
             'with create_perfetto_trace=True?)')
  for trace in traces:
    print(report(summarize(trace), args.top, args.process))


if __name__ == '__main__':
  main()
