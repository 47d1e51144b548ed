"""Published fusion networks with their official weights, each run exactly as its official test script runs it.

One module per network; importing this package imports every module in it, which registers its methods.
What each network's official pipeline does, quirks included, is in ``docs/zoo.md``.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
