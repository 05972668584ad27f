"""Import the FunctionApp and index its functions the way the Python worker and the host do, then invoke them.

The worker imports the script once, calls ``app.get_functions()`` once (a second call fails on
duplicate names), and binds arguments by parameter name: the trigger's binding name, plus
``context`` when the function asks for it.

Failures are shaped as on the real host:
- the worker fails to index (the import raises, no FunctionApp, ``get_functions()`` raises, a trigger's
  binding name is not a parameter): ``IndexingError``; the host logs "Worker failed to index functions" and
  runs with zero functions (GrpcWorkerChannel.ProcessFunctionMetadataResponses; python worker
  dispatcher._handle__functions_metadata_request);
- one function is in error (a reserved or conflicting route, an unresolved ``%SETTING%``): it is left out and
  logged as "The '<name>' function is in error: ..." and the others run (ScriptHost.GetFunctionDescriptorsAsync,
  ScriptHost.ValidateFunction, ScriptHost.HandleHostError);
- only what the local host itself cannot do (input/output binding parameters, a missing app module) stops it:
  ``AppLoadError``.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import inspect
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.constants import HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER

from .routes import RouteTemplate, join_prefix, name_order_key
from .settings import SettingsError, resolve_placeholders

log = logging.getLogger("devhost")


class AppLoadError(RuntimeError):
    """The local host cannot load the app at all (no such module) or cannot bind its functions."""


class IndexingError(RuntimeError):
    """The worker would fail to index the app; the host then runs with zero functions."""


# What FunctionInstanceLogger (azure-webjobs-sdk) logs for calls made through the host's APIs: HTTP requests
# and admin invocations alike.
HOST_API_REASON = "This function was programmatically called via the host APIs."


def _say(text: str) -> None:
    """Invocation lines go to stderr unbuffered, in order with the functions' own output."""
    print(text, file=sys.stderr, flush=True)


class InvocationContext(func.Context):
    """The ``context`` argument: what the worker passes, minus tracing the local host does not do."""

    def __init__(self, function_name: str, function_directory: str, invocation_id: str | None = None) -> None:
        self._invocation_id = invocation_id or str(uuid.uuid4())
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

    def default_reason(self) -> str:
        return HOST_API_REASON

    def invoke(self, trigger_value: Any, *, reason: str | None = None) -> Any:
        """Run the function once; its exception propagates.

        Logs the host's lines around it (FunctionInstanceLogger in azure-webjobs-sdk, with the short name
        ``Functions.<name>`` of ScriptHost's generated type): ``Executing 'Functions.<name>' (Reason='...',
        Id=<invocation id>)`` and ``Executed 'Functions.<name>' (Succeeded|Failed, Id=<invocation id>,
        Duration=<n>ms)``, which tests wait on.
        """
        invocation_id = str(uuid.uuid4())
        _say(
            f"Executing 'Functions.{self.name}' (Reason='{reason or self.default_reason()}', Id={invocation_id})"
        )
        started = time.perf_counter()
        succeeded = False
        try:
            kwargs: dict[str, Any] = {self.trigger_arg: trigger_value}
            if self.context_arg:
                kwargs[self.context_arg] = InvocationContext(self.name, self.directory, invocation_id)
            result = self.user_function(**kwargs)
            if inspect.isawaitable(result):
                # Each invocation gets its own loop: the local host runs invocations on threads.
                result = asyncio.run(_await(result))
            succeeded = True
            return result
        finally:
            duration = int((time.perf_counter() - started) * 1000)
            status = "Succeeded" if succeeded else "Failed"
            _say(f"Executed 'Functions.{self.name}' ({status}, Id={invocation_id}, Duration={duration}ms)")


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass
class HttpFunction(IndexedFunction):
    route: RouteTemplate = field(default=None)  # type: ignore[assignment]
    methods: frozenset[str] | None = None
    auth_level: str = "function"
    own_route: str = ""  # the function's route without routePrefix, after the empty-route rule

    def describe(self) -> str:
        methods = ",".join(sorted(self.methods)) if self.methods else "ALL"
        return f"{self.name}: [{methods}] /{self.route.template}"


@dataclass
class QueueFunction(IndexedFunction):
    queue_name: str = ""
    connection: str = "AzureWebJobsStorage"

    def default_reason(self) -> str:
        return f"New queue message detected on '{self.queue_name}'."

    def describe(self) -> str:
        return f"{self.name}: queueTrigger {self.queue_name} ({self.connection})"


@dataclass
class TimerFunction(IndexedFunction):
    schedule: str = ""
    run_on_startup: bool = False
    use_monitor: bool | None = None

    def default_reason(self) -> str:
        return f"Timer fired at {datetime.datetime.now(datetime.UTC).isoformat()}"

    def describe(self) -> str:
        startup = ", runOnStartup" if self.run_on_startup else ""
        return f"{self.name}: timerTrigger {self.schedule!r}{startup}"


@dataclass
class AppIndex:
    http: list[HttpFunction] = field(default_factory=list)
    queue: list[QueueFunction] = field(default_factory=list)
    timer: list[TimerFunction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # Functions left out, as the host's FunctionErrors: name -> message.
    errors: dict[str, str] = field(default_factory=dict)

    def all(self) -> list[IndexedFunction]:
        return [*self.http, *self.queue, *self.timer]


# get_functions() may run once per app instance; remember the result so a second DevHost in the
# same process (tests, reloads) reuses it. Holding the app keeps its id() from being reused.
_FUNCTIONS: dict[int, tuple[Any, list[Any]]] = {}


def get_functions_once(app: Any) -> list[Any]:
    """``app.get_functions()``, called once per app object; IndexingError when it raises."""
    cached = _FUNCTIONS.get(id(app))
    if cached is None:
        try:
            cached = (app, app.get_functions())
        except Exception as error:
            raise IndexingError(f"get_functions() raised {type(error).__name__}: {error}") from error
        _FUNCTIONS[id(app)] = cached
    return cached[1]


def load_app(root: Path, app_spec: str) -> Any:
    """Import ``module[:attribute]`` (attribute ``app`` by default) with ``root`` on sys.path.

    AppLoadError when the module itself does not exist (a wrong --app or --root); IndexingError when the
    import raises or the attribute is not a FunctionApp, as the worker would fail to index.
    """
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
        raise IndexingError(f"importing {module_name} raised {type(error).__name__}: {error}") from error
    except Exception as error:
        raise IndexingError(f"importing {module_name} raised {type(error).__name__}: {error}") from error
    app = getattr(module, attribute, None)
    if app is None or not hasattr(app, "get_functions"):
        raise IndexingError(f"{module_name}.{attribute} is not a func.FunctionApp")
    return app


def _enum_text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _binding_args(function: Any, trigger: Any) -> tuple[str, str | None, list[str]]:
    """The trigger argument, the context argument, and parameters the local host cannot bind.

    IndexingError when the trigger's binding name is not a parameter: the worker's FunctionLoadError, which
    fails the whole indexing.
    """
    user_function = function.get_user_function()
    params = inspect.signature(user_function).parameters
    trigger_arg = trigger.name
    if trigger_arg not in params:
        raise IndexingError(
            f"function {function.get_function_name()}: the trigger binding {trigger_arg!r} is not a parameter"
        )
    context_arg = "context" if "context" in params and trigger_arg != "context" else None
    unbound = [
        name
        for name, p in params.items()
        if name not in (trigger_arg, context_arg)
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return trigger_arg, context_arg, unbound


# ScriptHost.ValidateHttpFunction: "disallow custom routes in our own reserved route space".
RESERVED_ROUTE_PREFIXES = ("admin", "runtime")


def http_route(name: str, route: str | None) -> str:
    """The route the host serves a function at: an empty or whitespace route is the function's name."""
    return name if route is None or not route.strip() else route


def http_route_error(route: str, methods: frozenset[str] | None, accepted: list[HttpFunction]) -> str | None:
    """Why the host refuses this HTTP function, or None (ScriptHost.ValidateHttpFunction, HttpRoutesConflict).

    ``route`` is the function's own route (without routePrefix); ``accepted`` are the HTTP functions already
    accepted, earlier in name order. Routes are compared without surrounding slashes, ignoring case; no
    methods means every method.
    """
    # A plain prefix of the lower-cased route: "administrator" and "runtimes/x" are refused too.
    if route.strip("/").lower().startswith(RESERVED_ROUTE_PREFIXES):
        return "The specified route conflicts with one or more built in routes."
    for other in accepted:
        if other.own_route.strip("/").lower() != route.strip("/").lower():
            continue
        if methods is None or other.methods is None or methods & other.methods:
            return f"The route specified conflicts with the route defined by function '{other.name}'."
    return None


def index_functions(
    functions: list[Any], *, route_prefix: str, root: Path, only: set[str] | None = None
) -> AppIndex:
    """Sort functions by trigger type in name order, validating them as the host does.

    Functions are taken in name order (FunctionMetadataManager: ``OrderBy(Name, OrdinalIgnoreCase)``), so of
    two conflicting routes the later name is the one refused. A function in error is logged and left out
    (``AppIndex.errors``); IndexingError and AppLoadError are described in the module docstring.
    """
    index = AppIndex()
    for function in sorted(functions, key=lambda f: name_order_key(f.get_function_name())):
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
        try:
            indexed = _index_one(kind, trigger, common, route_prefix, index.http)
        except SettingsError as error:
            # Binding expressions are resolved when the host indexes the function: "'%X%' does not resolve
            # to a value" is a FunctionIndexingException, which leaves that one function out.
            indexed = str(error)
        if isinstance(indexed, str):
            index.errors[name] = indexed
            log.error("The '%s' function is in error: %s", name, indexed)
        elif isinstance(indexed, HttpFunction):
            index.http.append(indexed)
        elif isinstance(indexed, QueueFunction):
            index.queue.append(indexed)
        elif isinstance(indexed, TimerFunction):
            index.timer.append(indexed)
        else:
            index.skipped.append(f"{name}: {kind} (not supported by the local host)")
    return index


def _index_one(
    kind: str, trigger: Any, common: dict[str, Any], route_prefix: str, accepted: list[HttpFunction]
) -> IndexedFunction | str | None:
    """The indexed function, the message of its error, or None for a trigger the local host does not run."""
    name = common["name"]
    if kind == HTTP_TRIGGER:
        route = http_route(name, trigger.route)
        methods = frozenset(_enum_text(m).upper() for m in trigger.methods) if trigger.methods else None
        error = http_route_error(route, methods, accepted)
        if error:
            return error
        return HttpFunction(
            **common,
            route=RouteTemplate(join_prefix(route_prefix, route)),
            methods=methods,
            auth_level=_enum_text(trigger.auth_level or "function").lower(),
            own_route=route,
        )
    if kind == QUEUE_TRIGGER:
        return QueueFunction(
            **common,
            queue_name=resolve_placeholders(trigger.queue_name, what=f"{name}: queue name").lower(),
            connection=trigger.connection or "AzureWebJobsStorage",
        )
    if kind == TIMER_TRIGGER:
        return TimerFunction(
            **common,
            schedule=resolve_placeholders(trigger.schedule, what=f"{name}: schedule"),
            run_on_startup=bool(trigger.run_on_startup),
            use_monitor=trigger.use_monitor,
        )
    return None


def connection_string(setting: str) -> str:
    """The storage connection string for a binding's ``connection`` setting name."""
    # The host also accepts the setting name with an "AzureWebJobs" prefix.
    for name in (setting, f"AzureWebJobs{setting}"):
        value = os.environ.get(name)
        if value:
            return value
    raise AppLoadError(
        f"app setting {setting!r} (a storage connection string) is not set; "
        "start Azurite (.venv/bin/python -m tools.azurite) and set it in the environment or local.settings.json"
    )
