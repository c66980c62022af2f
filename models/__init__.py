"""Every module in this folder defines one method and registers it in ``pipeline.methods.METHODS``.

Importing this package imports them all, so adding a method never edits this file.

It also turns on PyTorch's transparent huge pages for CPU tensors of 2 MB and more (``THP_MEM_ALLOC_ENABLE``,
read when such a tensor is first allocated), unless the environment already sets it: the N³ block and the conv
stacks allocate large short-lived tensors, and faulting them in 4 KiB pages made their element-wise ops 3–4×
slower on CPU (docs/performance.md). It takes effect where the kernel offers THP (``madvise`` or ``always``).
"""

import importlib
import os
import pkgutil

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
