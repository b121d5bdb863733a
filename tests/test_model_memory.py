"""A process that switches models gives the old one's heap back (cals/model/memory.py)."""
from __future__ import annotations

import platform

import pytest

from cals.model.memory import release_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@glibc
def test_freed_heap_in_the_middle_of_the_arena_goes_back_to_the_system():
    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MB of heap blocks, every page touched
    pin = bytearray(64 * 1024)  # allocated last: the freed blocks are not at the heap's top
    del blocks
    before = _rss_mb()
    assert release_freed_memory() is True
    assert before - _rss_mb() > 100, "the freed blocks stayed resident"
    del pin
