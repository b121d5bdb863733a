"""Hand the heap a replaced model leaves behind back to the system.

A long-lived process that loads a new model version at every promotion (the function's workers, the
sampler) otherwise grows: glibc keeps the freed pages of the old ONNX Runtime session and torch
tensors in its arenas. Measured (`python -m bench.model_reload`, 20 promotions of RTMPose-m served
through ModelWatcher): 654 -> 1203 MB without the release, 587 -> 612 MB with it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Collect garbage, then return free heap pages to the system; False where that is not possible."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
