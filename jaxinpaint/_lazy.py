"""Lazy re-exports for the package `__init__`s: a name is imported from its
module on first use, so `import jaxinpaint.training` (and a CLI's `--help`,
or a config file importing the config schema) does not import JAX until a
name that needs it is used."""
import importlib


def exports(package: str, names: dict[str, str]):
  """(`__getattr__`, `__dir__`, `__all__`) for a package whose public names
  live in its modules: `names` maps each name to its module, relative to
  `package` ('search' or '.search')."""

  def __getattr__(name):
    if name in names:
      module = importlib.import_module('.' + names[name].lstrip('.'), package)
      return getattr(module, name)
    raise AttributeError(f'module {package!r} has no attribute {name!r}')

  def __dir__():
    module = importlib.import_module(package)
    return sorted(set(names) | set(vars(module)))

  return __getattr__, __dir__, sorted(names)
