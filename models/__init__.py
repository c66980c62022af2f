"""Every module in this folder defines one method and registers it in ``pipeline.methods.METHODS``.

Importing this package imports them all, so adding a method never edits this file.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
