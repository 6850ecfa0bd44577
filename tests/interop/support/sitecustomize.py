"""Python 3.11 compatibility layer for the parsec-cloud 2.10.0 client.

scripts/interop-setup.sh copies this file as ``sitecustomize.py`` into the
site-packages of the interop venv, so Python imports it at interpreter start,
before the test suite (or anything else) imports ``parsec``. It only restores
behaviour the pinned dependencies of parsec-cloud 2.10.0 expected from older
Pythons; it does not touch parsec's own code or what goes on the wire.

Three problems are worked around:

* **collections ABC aliases.** The marshmallow copy parsec depends on (and a
  few other pinned packages) still write ``collections.Mapping`` and friends.
  Those aliases of ``collections.abc`` were removed in Python 3.10, so the
  serializers fail to import. We put the aliases back.

* **attrs 21.4 and bare ``super()`` in slotted classes.** When attrs builds a
  ``slots=True`` class it creates a *new* class object, and must repoint the
  ``__class__`` closure cell used by zero-argument ``super()`` at it. attrs
  21.4 does this by forging a code object; its self-check fails on 3.11 (code
  objects changed), so it silently falls back to a no-op (only a
  RuntimeWarning is printed). Methods calling ``super()`` then see the old,
  slot-less class and raise ``TypeError: super(type, obj): obj must be an
  instance or subtype of type`` — e.g. certificate ``verify_and_load`` during
  organization bootstrap. Closure cells have been writable
  (``cell.cell_contents = value``) since Python 3.7, so we give attrs a setter
  that does exactly that.

* **trio 0.20's traceback hook.** On import, ``trio._core._multierror``
  replaces ``traceback.TracebackException.__init__`` with a function whose
  keyword list predates 3.11. Python 3.11 passes ``max_group_width`` and
  ``max_group_depth`` when it formats an exception's ``__cause__`` /
  ``__context__``, so printing any chained exception blows up with
  ``TypeError: ... unexpected keyword argument 'max_group_width'`` (pytest
  then reports an INTERNALERROR instead of the real failure). We wrap trio's
  replacement so that those two keywords are dropped before calling it.

The attrs and trio fixes must run right after *their* module is loaded, not
when this file runs (neither is imported yet, and importing them eagerly
would be wasteful for unrelated Python processes of the venv such as pip).
A tiny import hook (``_AfterImport``) runs a callback once the module's code
has executed.
"""

import collections
import collections.abc
import importlib.abc
import importlib.machinery
import sys

# --------------------------------------------------------------------------
# 1. collections.Mapping & co.

_ABC_NAMES = (
    "Callable",
    "Hashable",
    "Iterable",
    "Iterator",
    "Mapping",
    "MutableMapping",
    "MutableSequence",
    "MutableSet",
    "Sequence",
    "Set",
)
for _name in _ABC_NAMES:
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
del _name


# --------------------------------------------------------------------------
# Import hook: run a callback right after a given module has been executed.


class _AfterImport(importlib.abc.MetaPathFinder):
    """Meta path finder that never loads anything itself: it lets the normal
    PathFinder find the module, then wraps the loader's ``exec_module`` so
    that ``callbacks[name](module)`` runs once the module body is done."""

    def __init__(self, callbacks):
        self._callbacks = dict(callbacks)

    def find_spec(self, fullname, path, target=None):
        callback = self._callbacks.get(fullname)
        if callback is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        real_exec_module = loader.exec_module

        def exec_module(module):
            real_exec_module(module)
            try:
                callback(module)
            except Exception as exc:  # never break an import because of us
                sys.stderr.write(f"[interop sitecustomize] cannot patch {fullname}: {exc!r}\n")

        loader.exec_module = exec_module
        return spec


# --------------------------------------------------------------------------
# 2. attrs: a closure-cell setter that works on every Python >= 3.7.


def _assign_closure_cell(cell, value):
    cell.cell_contents = value


def _patch_attrs_compat(module):
    # attr._make does `from attr._compat import set_closure_cell`, and it is
    # imported after attr._compat, so replacing the name here is enough.
    if hasattr(module, "set_closure_cell"):
        module.set_closure_cell = _assign_closure_cell


def _patch_attrs_make(module):
    # Belt and braces, in case attr._make got its own reference some other way.
    if hasattr(module, "set_closure_cell"):
        module.set_closure_cell = _assign_closure_cell


# --------------------------------------------------------------------------
# 3. trio: accept (and ignore) the keywords Python 3.11 added.

_PY311_ONLY_KWARGS = ("max_group_width", "max_group_depth")


def _patch_trio_multierror(module):
    import traceback

    trio_init = getattr(module, "traceback_exception_init", None)
    if trio_init is None or traceback.TracebackException.__init__ is not trio_init:
        return  # another trio version: nothing to fix

    def init_accepting_py311_kwargs(self, *args, **kwargs):
        for key in _PY311_ONLY_KWARGS:
            kwargs.pop(key, None)
        trio_init(self, *args, **kwargs)

    init_accepting_py311_kwargs.__wrapped__ = trio_init
    traceback.TracebackException.__init__ = init_accepting_py311_kwargs


_callbacks = {
    "attr._compat": _patch_attrs_compat,
    "attr._make": _patch_attrs_make,
}
if sys.version_info >= (3, 11):
    _callbacks["trio._core._multierror"] = _patch_trio_multierror

# If attrs was somehow imported before us (it cannot be at interpreter start,
# but keep this file safe to import late), patch it in place.
for _mod_name, _callback in list(_callbacks.items()):
    _already = sys.modules.get(_mod_name)
    if _already is not None:
        _callback(_already)
del _mod_name, _callback, _already

sys.meta_path.insert(0, _AfterImport(_callbacks))
