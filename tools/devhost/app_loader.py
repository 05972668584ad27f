"""Import the FunctionApp and index its functions the way the Python worker does, then invoke them.

The worker imports the script once, calls ``app.get_functions()`` once (a second call fails on
duplicate names), and binds arguments by parameter name: the trigger's binding name, plus
``context`` when the function asks for it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.constants import HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER

from .routes import RouteTemplate, join_prefix
from .settings import resolve_placeholders

log = logging.getLogger("devhost")


class AppLoadError(RuntimeError):
    """The app module or its functions cannot be loaded."""


class InvocationContext(func.Context):
    """The ``context`` argument: what the worker passes, minus tracing the local host does not do."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


@dataclass
class IndexedFunction:
    """A function as the worker sees it: name, callable, and how to bind its arguments."""

    name: str
    user_function: Any
    trigger: Any
    trigger_arg: str
    context_arg: str | None
    directory: str

    def invoke(self, trigger_value: Any) -> Any:
        kwargs: dict[str, Any] = {self.trigger_arg: trigger_value}
        if self.context_arg:
            kwargs[self.context_arg] = InvocationContext(self.name, self.directory)
        result = self.user_function(**kwargs)
        if inspect.isawaitable(result):
            # Each invocation gets its own loop: the local host runs invocations on threads.
            result = asyncio.run(_await(result))
        return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass
class HttpFunction(IndexedFunction):
    route: RouteTemplate = field(default=None)  # type: ignore[assignment]
    methods: frozenset[str] | None = None
    auth_level: str = "function"

    def describe(self) -> str:
        methods = ",".join(sorted(self.methods)) if self.methods else "ALL"
        return f"{self.name}: [{methods}] /{self.route.template}"


@dataclass
class QueueFunction(IndexedFunction):
    queue_name: str = ""
    connection: str = "AzureWebJobsStorage"

    def describe(self) -> str:
        return f"{self.name}: queueTrigger {self.queue_name} ({self.connection})"


@dataclass
class TimerFunction(IndexedFunction):
    schedule: str = ""
    run_on_startup: bool = False
    use_monitor: bool | None = None

    def describe(self) -> str:
        startup = ", runOnStartup" if self.run_on_startup else ""
        return f"{self.name}: timerTrigger {self.schedule!r}{startup}"


@dataclass
class AppIndex:
    http: list[HttpFunction] = field(default_factory=list)
    queue: list[QueueFunction] = field(default_factory=list)
    timer: list[TimerFunction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def all(self) -> list[IndexedFunction]:
        return [*self.http, *self.queue, *self.timer]


# get_functions() may run once per app instance; remember the result so a second DevHost in the
# same process (tests, reloads) reuses it. Holding the app keeps its id() from being reused.
_FUNCTIONS: dict[int, tuple[Any, list[Any]]] = {}


def get_functions_once(app: Any) -> list[Any]:
    cached = _FUNCTIONS.get(id(app))
    if cached is None:
        cached = (app, app.get_functions())
        _FUNCTIONS[id(app)] = cached
    return cached[1]


def load_app(root: Path, app_spec: str) -> Any:
    """Import ``module[:attribute]`` (attribute ``app`` by default) with ``root`` on sys.path."""
    module_name, _, attribute = app_spec.partition(":")
    attribute = attribute or "app"
    root_text = str(root.resolve())
    if root_text not in sys.path:
        sys.path.insert(0, root_text)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if error.name == module_name:
            raise AppLoadError(f"cannot import {module_name!r} from {root_text}: {error}") from error
        raise
    try:
        app = getattr(module, attribute)
    except AttributeError as error:
        raise AppLoadError(
            f"{module_name} has no attribute {attribute!r} (expected a func.FunctionApp)"
        ) from error
    if not hasattr(app, "get_functions"):
        raise AppLoadError(f"{module_name}.{attribute} is not a FunctionApp")
    return app


def _enum_text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _binding_args(function: Any, trigger: Any) -> tuple[str, str | None, list[str]]:
    """The trigger argument, the context argument, and parameters the local host cannot bind."""
    user_function = function.get_user_function()
    params = inspect.signature(user_function).parameters
    trigger_arg = trigger.name
    context_arg = "context" if "context" in params and trigger_arg != "context" else None
    unbound = [
        name
        for name, p in params.items()
        if name not in (trigger_arg, context_arg)
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if trigger_arg not in params:
        unbound.insert(0, f"{trigger_arg} (the trigger binding name is not a parameter)")
    return trigger_arg, context_arg, unbound


def index_functions(
    functions: list[Any], *, route_prefix: str, root: Path, only: set[str] | None = None
) -> AppIndex:
    """Sort functions by trigger type, resolving %SETTING% placeholders in queue names and schedules."""
    index = AppIndex()
    for function in functions:
        name = function.get_function_name()
        if only is not None and name.lower() not in only:
            continue
        trigger = function.get_trigger()
        kind = trigger.get_binding_name()
        trigger_arg, context_arg, unbound = _binding_args(function, trigger)
        if unbound:
            raise AppLoadError(
                f"function {name}: the local host cannot bind parameter(s) {', '.join(unbound)}; "
                "it supports the trigger argument and `context` (no input/output bindings)"
            )
        extra = [
            b.get_binding_name() for b in function.get_bindings() if b is not trigger and b.name != "$return"
        ]
        if extra:
            log.warning("function %s: bindings %s are ignored by the local host", name, ", ".join(extra))
        common = dict(
            name=name,
            user_function=function.get_user_function(),
            trigger=trigger,
            trigger_arg=trigger_arg,
            context_arg=context_arg,
            directory=str(root),
        )
        if kind == HTTP_TRIGGER:
            methods = trigger.methods
            index.http.append(
                HttpFunction(
                    **common,
                    route=RouteTemplate(
                        join_prefix(route_prefix, name if trigger.route is None else trigger.route)
                    ),
                    methods=frozenset(_enum_text(m).upper() for m in methods) if methods else None,
                    auth_level=_enum_text(trigger.auth_level or "function").lower(),
                )
            )
        elif kind == QUEUE_TRIGGER:
            index.queue.append(
                QueueFunction(
                    **common,
                    queue_name=resolve_placeholders(trigger.queue_name, what=f"{name}: queue name").lower(),
                    connection=trigger.connection or "AzureWebJobsStorage",
                )
            )
        elif kind == TIMER_TRIGGER:
            index.timer.append(
                TimerFunction(
                    **common,
                    schedule=resolve_placeholders(trigger.schedule, what=f"{name}: schedule"),
                    run_on_startup=bool(trigger.run_on_startup),
                    use_monitor=trigger.use_monitor,
                )
            )
        else:
            index.skipped.append(f"{name}: {kind} (not supported by the local host)")
    return index


def connection_string(setting: str) -> str:
    """The storage connection string for a binding's ``connection`` setting name."""
    # The host also accepts the setting name with an "AzureWebJobs" prefix.
    for name in (setting, f"AzureWebJobs{setting}"):
        value = os.environ.get(name)
        if value:
            return value
    raise AppLoadError(
        f"app setting {setting!r} (a storage connection string) is not set; "
        "start Azurite (python -m tools.azurite) and set it in the environment or local.settings.json"
    )
