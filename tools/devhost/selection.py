"""Which functions a host process runs: ``--functions`` names and the groups ``http``, ``queues``, ``timers``.

On Flex Consumption all HTTP functions scale together on one group of instances and every other function on
instances of its own, so no in-process state is shared between them. Running ``--functions http`` and
``--functions queues timers`` as two processes on one storage account reproduces that split locally.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.functions.decorators.constants import HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER

from .settings import SettingsError

GROUPS = {"http": HTTP_TRIGGER, "queues": QUEUE_TRIGGER, "timers": TIMER_TRIGGER}


class SelectionError(SettingsError):
    """A ``--functions`` entry names neither a function of the app nor a group."""


def select_functions(functions: Iterable[Any], selectors: Iterable[str] | None) -> set[str] | None:
    """Lower-cased names of the functions to run, or None for all.

    ``functions`` are the app's indexed functions (``app.get_functions()``); each selector is a function
    name (case-insensitive, as the host treats names) or a group. A name wins over a group of the same name.
    """
    if not selectors:
        return None
    kinds = {f.get_function_name().lower(): f.get_trigger().get_binding_name() for f in functions}
    chosen: set[str] = set()
    for selector in selectors:
        key = selector.strip().lower()
        if key in kinds:
            chosen.add(key)
        elif key in GROUPS:
            chosen |= {name for name, kind in kinds.items() if kind == GROUPS[key]}
        else:
            raise SelectionError(
                f"--functions {selector!r} is neither a function of the app nor a group "
                f"({', '.join(sorted(GROUPS))}); functions: {', '.join(sorted(kinds)) or '(none)'}"
            )
    return chosen
