"""Strategy specs: a strategy and its options as one string, for `--strategies` and CALS_SAMPLER_STRATEGY.

    name                      e.g. "typiclust"
    name:opt=value,opt=value  e.g. "tcm:switch=80,random_share=0.25", "hybrid:factor=3"

Values are int, else float, else a plain word. The canonical string (`str(spec)`: options sorted
by name) names the same strategy however the options were ordered, and is usable as a folder name.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

from cals.errors import CalsError

Value = Union[int, float, str]
_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9_.+-]+")  # no '/', ':', ',', '=' or spaces: a spec is a folder name


@dataclass(frozen=True)
class StrategySpec:
    """A parsed spec: the strategy's name and its options, sorted by option name."""

    name: str
    options: tuple[tuple[str, Value], ...] = ()

    @property
    def kwargs(self) -> dict[str, Value]:
        return dict(self.options)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in self.options)


def read_spec(text: str | StrategySpec, catalogue: Mapping[str, frozenset[str]]) -> StrategySpec:
    """The spec in `text`, its name and option names checked against `catalogue` (strategy name: the
    options a spec may give it; `cals.sampling.strategies.parse_spec` passes the strategies' tables).

    Raises CalsError naming the malformed part, the unknown strategy or the unknown option.
    """
    if isinstance(text, StrategySpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise CalsError(f"strategy spec {text!r} is no name; write name or name:option=value,...")
    name, colon, rest = text.strip().partition(":")
    name = name.strip()
    if name not in catalogue:
        raise CalsError(f"unknown strategy {name!r} in spec {text!r}; choose one of {sorted(catalogue)}")
    if colon and not rest.strip():
        raise CalsError(f"strategy spec {text!r} has ':' but no options; write {name!r} or {name}:option=value")
    options: dict[str, Value] = {}
    for part in rest.split(",") if colon else []:
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not _KEY.fullmatch(key) or not _WORD.fullmatch(value):
            raise CalsError(f"malformed option {part.strip()!r} in strategy spec {text!r}: write option=value "
                            "(value: a number or a word without '/', ':', ',', '=' or spaces)")
        if key in options:
            raise CalsError(f"option {key!r} given twice in strategy spec {text!r}")
        options[key] = _value(key, value, text)
    allowed = catalogue[name]
    bad = sorted(set(options) - allowed)
    if bad:
        raise CalsError(f"strategy {name!r} takes no option(s) {bad} (spec {text!r}); it takes {sorted(allowed)}")
    return StrategySpec(name, tuple(sorted(options.items())))


def option_int(owner: str, key: str, value: Any, minimum: int | None = None) -> int:
    """An integer option (3.0 passes as 3), >= minimum if given; else CalsError naming strategy and option."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and \
        value == int(value) and (minimum is None or value >= minimum)
    if not ok:
        raise CalsError(f"{owner} option {key} must be an integer" + (f" >= {minimum}" if minimum is not None else "")
                        + f", got {value!r}")
    return int(value)


def option_float(owner: str, key: str, value: Any, low: float, high: float, *, high_open: bool = False) -> float:
    """A number in [low, high] (or [low, high) with high_open), else CalsError naming strategy and option."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= value and \
        (value < high if high_open else value <= high)
    if not ok:
        raise CalsError(f"{owner} option {key} must be a number in [{low}, {high}{')' if high_open else ']'}, "
                        f"got {value!r}")
    return float(value)


def _value(key: str, text: str, spec: str) -> Value:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        raise CalsError(f"option {key}={text} in strategy spec {spec!r} is not a finite number")
    return number


def _format(value: Value) -> str:
    return repr(value) if isinstance(value, float) else str(value)
