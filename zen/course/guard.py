"""Keep a student's cells from rebinding what the grader's cells rely on.

``zen lab grade`` runs each cell it owns (the released lab's set-up and check cells) as::

    __import__("zen.course.guard", fromlist=["_"]).before(globals())
    <the released cell>
    __import__("zen.course.guard", fromlist=["_"]).after(globals(), ["names", "it", "binds"])

:func:`after` remembers the values of the names that released cell bound; :func:`before`
puts them back into the notebook's namespace and restores every function, class and module
attribute of ``zen``, ``torch``, ``math``, ``einops`` and ``builtins`` to the object it was
when first seen. A student cell that runs ``check_function = lambda *a, **k: print('✓')``,
patches ``zen.linreg.closed_form`` or ``torch.isclose``, or rebinds ``cases`` therefore changes
nothing for the checks. Plain data attributes (flags, caches) are left alone. This is a guard
against rebinding, not a sandbox: code running in the kernel can still reach the guard itself.
"""

from __future__ import annotations

import sys
import types
from typing import Any

#: module-name prefixes whose callable attributes are restored before each released cell
WATCHED = ("zen", "torch", "math", "einops", "builtins", "numpy")

_modules: dict[str, tuple[types.ModuleType, dict[str, Any]]] = {}
_names: dict[str, Any] = {}


def _restorable(value: Any) -> bool:
    return callable(value) or isinstance(value, types.ModuleType)


def _snapshot_new_modules() -> None:
    for name, module in list(sys.modules.items()):
        if name in _modules or not isinstance(module, types.ModuleType):
            continue
        if name.split(".")[0] in WATCHED:
            _modules[name] = (module, {k: v for k, v in vars(module).items() if _restorable(v)})


def before(namespace: dict[str, Any]) -> None:
    """Restore module attributes and the released cells' names, before a released cell runs."""
    _snapshot_new_modules()
    for module, saved in _modules.values():
        current = vars(module)
        for key, value in saved.items():
            if current.get(key) is not value:
                setattr(module, key, value)
    for key, value in _names.items():
        namespace[key] = value


def after(namespace: dict[str, Any], names: list[str]) -> None:
    """Remember what a released cell bound (``names``), after it ran."""
    _snapshot_new_modules()
    for key in names:
        if key in namespace:
            _names[key] = namespace[key]
