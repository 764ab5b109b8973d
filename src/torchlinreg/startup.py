"""How the ``torchlinreg`` command starts: two process-level decisions the library never makes.

Both are taken by :func:`fast_start` around ``fit``, and only in a fresh process (one that
has not imported PyTorch yet); ``import torchlinreg`` and the library's own functions leave
Python and PyTorch as they are.

**No garbage collection of the imports.** Importing PyTorch creates about 250,000 objects
that live as long as the process, and the cyclic garbage collector scans them all in each
full collection: three of them while the command starts, about 0.3 s. :func:`fast_start`
pauses the collector while PyTorch and the library are imported, then moves what exists to
the collector's permanent generation (``gc.freeze()``) and resumes it, so later collections
look at new objects only. The few thousand cyclic objects the imports leave unreachable
(about 1 MB) are kept.

**No torch._dynamo.** ``torch.optim`` imports ``torch._dynamo`` (the ``torch.compile``
tracer: about 1 s, as long as ``import torch`` itself) the first time an optimizer is
used, although nothing is compiled:

- ``Optimizer.add_param_group`` (called by every constructor), ``zero_grad``,
  ``state_dict`` and ``load_state_dict`` are wrapped by ``torch._disable_dynamo``, whose
  wrapper imports ``torch._dynamo`` on its first call to build ``torch._dynamo.disable(fn)``
  and caches it as ``fn.__dynamo_disable``;
- ``step`` of SGD, Adam, AdamW and most others is wrapped by
  ``torch.optim.optimizer._use_grad_for_differentiable``, which imports ``torch._dynamo``
  on every call for two ``graph_break()`` calls, no-ops outside ``torch.compile``.

PyTorch has no setting that avoids this (``TORCH_COMPILE_DISABLE`` and
``torch._dynamo.config.disable`` act after the import). So, while :func:`without_dynamo`
is active and only if ``torch._dynamo`` is not imported yet, the first kind is resolved to
the function itself (what ``torch._dynamo.disable`` means when nothing is compiled) and
each ``torch.optim`` step of the second kind is replaced by the same wrapper without the
graph breaks. On leaving, PyTorch's own wrappers are restored. Eager results are
unchanged; code that calls ``torch.compile`` must not run inside it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def fast_start(*modules: str) -> Iterator[None]:
    """Import ``modules`` (PyTorch among them) without garbage collection, then run without ``torch._dynamo``.

    Usable as a decorator of the command. In a process that has imported PyTorch already
    only the second part applies (and only if ``torch._dynamo`` is not imported either).
    """
    if "torch" not in sys.modules:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for name in modules:
                importlib.import_module(name)
        finally:
            gc.freeze()  # what the imports made lives as long as the process: no collection needs to scan it
            if was_enabled:
                gc.enable()
    with without_dynamo():
        yield


@contextlib.contextmanager
def without_dynamo() -> Iterator[bool]:
    """Run ``torch.optim`` without importing ``torch._dynamo``; yields whether that was arranged.

    Usable as a decorator. Does nothing (yields False) when ``torch._dynamo`` is already
    imported, or when this PyTorch's optimizers are wrapped differently.
    """
    if "torch._dynamo" in sys.modules:
        yield False
        return
    undo = _resolve_wrappers()
    try:
        yield bool(undo)
    finally:
        for restore in reversed(undo):
            restore()


def _resolve_wrappers() -> list[Callable[[], None]]:
    """Resolve the wrappers of every ``torch.optim`` optimizer class; returns how to undo it."""
    import torch
    import torch.optim.optimizer as optim

    lazy_disable = getattr(torch, "_disable_dynamo", None)
    use_grad = getattr(optim, "_use_grad_for_differentiable", None)
    # Each wrapper is a closure of one code object: a probe's tells the wrappers apart from anything else.
    disable_code = lazy_disable(_probe).__code__ if lazy_disable is not None else None
    use_grad_code = use_grad(_probe).__code__ if use_grad is not None else None
    undo: list[Callable[[], None]] = []
    for cls in _optimizer_classes(optim.Optimizer):
        for name, attr in list(vars(cls).items()):
            code = getattr(attr, "__code__", None)
            if code is None or not hasattr(attr, "__wrapped__"):
                continue
            if code is disable_code and not hasattr(attr.__wrapped__, "__dynamo_disable"):
                fn = attr.__wrapped__
                setattr(fn, "__dynamo_disable", fn)  # the wrapper's own cache: call fn itself from now on
                undo.append(functools.partial(delattr, fn, "__dynamo_disable"))
            elif code is use_grad_code:
                setattr(cls, name, _eager_use_grad(attr.__wrapped__))
                undo.append(functools.partial(setattr, cls, name, attr))
    return undo


def _optimizer_classes(base: type) -> list[type]:
    """``base`` and its subclasses defined in ``torch.optim`` (not users' own)."""
    found, todo = [], [base]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("torch.optim") and cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def _probe():
    """Only wrapped, never called."""


def _eager_use_grad(step: Callable) -> Callable:
    """PyTorch's ``_use_grad_for_differentiable`` without its ``torch._dynamo.graph_break()`` calls."""
    import torch

    @functools.wraps(step)
    def _use_grad(self, *args, **kwargs):
        prev_grad = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return step(self, *args, **kwargs)
        finally:
            torch.set_grad_enabled(prev_grad)

    return _use_grad
