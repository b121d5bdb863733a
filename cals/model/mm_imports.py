"""Make mmpose importable on the lean stack CALS installs (mmcv-lite, no torchvision).

mmpose imports two things at package-import time that CALS never uses: EDPose's
head needs mmcv's compiled ops (absent in mmcv-lite) and the SimCC visualizer
needs torchvision (whose registry build is CUDA-only). When, and only when, those
binaries are missing, we register placeholder modules for exactly those two
mmpose submodules; using either placeholder raises an ImportError that says why.
With full mmcv and torchvision installed, nothing is replaced.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
import types
import warnings

logger = logging.getLogger(__name__)
_done = False


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def _torchvision_broken() -> bool:
    if _missing("torchvision"):
        return True
    try:
        import torchvision  # noqa: F401
    except Exception:  # a CUDA-only build next to CPU torch fails at import
        return True
    return False


def _placeholder(module: str, name: str, needs: str) -> None:
    def unavailable(*args, **kwargs):
        raise ImportError(f"{name} needs {needs}, which this installation lacks")

    mod = types.ModuleType(module)
    mod.__path__ = []  # a package, so submodule imports fail cleanly
    setattr(mod, name, type(name, (), {"__init__": unavailable}))
    sys.modules[module] = mod
    logger.debug("using a placeholder for %s (%s missing)", module, needs)


def setup() -> None:
    """Import and register mmpose's modules once per process."""
    global _done
    if _done:
        return
    if _missing("mmcv._ext"):
        _placeholder("mmpose.models.heads.transformer_heads", "EDPoseHead", "full mmcv (compiled ops)")
    if _torchvision_broken():
        _placeholder("mmpose.visualization.simcc_vis", "SimCCVisualizer", "torchvision")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mmpose.utils import register_all_modules

        register_all_modules(init_default_scope=True)
    _plain_config_text()
    _done = True


def _plain_config_text() -> None:
    """Skip yapf when mmengine prints or dumps a config.

    mmengine runs every config text it logs or writes through yapf: about 7 s per call for a
    26-point RTMPose-m config on 2 cores, three calls per training run, 37 of a 1-iteration
    run's 48 s. The unformatted text is the same Python, read back by Config.fromfile as before.
    """
    import mmengine.config.config as mm_config

    mm_config.FormatCode = lambda text, style_config=None, verify=False: (text, False)
