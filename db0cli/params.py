"""How commands declare their arguments, once, for two readers: Typer and the fast path.

A command is a plain function whose parameters are annotated `Annotated[T, Opt(...)]` or
`Annotated[T, Arg(...)]` (this module's classes, standard library only), listed in its module's
`COMMANDS`. Typer reads them through `typer_command` (help, errors, completions: every command
has them); the fast path (`fast_call`) parses the common, well-formed cases itself and calls the
same function without importing Typer or click at all. Whatever the fast path is not sure of
(`--help`, an unknown option, a value that does not parse, a missing argument) it hands to
Typer, so help and errors are Typer's, always.
"""

from __future__ import annotations

import types

from db0.daemon.protocol import Db0Error

# `typing` is not imported at run time: it is a large part of a hot command's start-up, and
# nothing here needs it but annotations (mypy reads the TYPE_CHECKING branches).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Annotated as Annotated  # noqa: PLC0414 (re-exported for mypy)
    from typing import Any

    Fn = Callable[..., Any]
else:
    class Annotated:
        """What a command module writes as `Annotated[T, Opt(...)]`: at run time just the pair
        (T, spec), which `params_of` reads; for mypy, typing's own Annotated."""

        def __class_getitem__(cls, item: tuple) -> Hint:
            return Hint(item[0], item[1])


class Hint:
    """A parameter's declared type and its Opt or Arg (what `Annotated[T, spec]` makes)."""

    __slots__ = ("base", "spec")

    def __init__(self, base: Any, spec: Opt | Arg) -> None:
        self.base = base
        self.spec = spec


class Opt:
    """An option: its names (`-n`, `--limit`), help, choices, metavar, and `param`: the
    request parameter its value goes to when that is not the function parameter's own name
    (`k` for recall's `--limit`, `context.user` for `--user`), so that the daemon's word on a
    parameter is said in the option's name (`explain`)."""

    def __init__(self, *decls: str, help: str = "", choices: tuple[str, ...] | None = None,
                 metavar: str | None = None, hidden: bool = False,
                 show_default: bool = True, param: str | None = None) -> None:
        self.decls = decls
        self.help = help
        self.choices = choices
        self.metavar = metavar
        self.hidden = hidden
        self.show_default = show_default
        self.param = param


class Arg:
    """A positional argument."""

    def __init__(self, help: str = "", choices: tuple[str, ...] | None = None,
                 metavar: str | None = None, show_default: bool = True,
                 param: str | None = None) -> None:
        self.help = help
        self.choices = choices
        self.metavar = metavar
        self.show_default = show_default
        self.param = param


class Command:
    """A command: its words (("remember",) or ("session", "start")), its function, Typer's
    context settings, and whether the fast path may run it (False: always through Typer, for a
    command that passes raw arguments on)."""

    __slots__ = ("context_settings", "fast", "fn", "path")

    def __init__(self, path: tuple[str, ...], fn: Fn,
                 context_settings: dict[str, Any] | None = None, fast: bool = True) -> None:
        self.path = path
        self.fn = fn
        self.context_settings = context_settings
        self.fast = fast


def cmd(path: str, fn: Fn, *, context_settings: dict[str, Any] | None = None,
        fast: bool = True) -> Command:
    return Command(tuple(path.split()), fn, context_settings, fast and not context_settings)


# -- the parameters of a function -------------------------------------------------------------

class Param:
    """One declared parameter: `kind` is int, float, str, bool or list (of str); `base` the
    annotated type as written (Typer's reading needs it)."""

    __slots__ = ("base", "default", "kind", "name", "required", "spec")

    def __init__(self, name: str, kind: type, spec: Opt | Arg, default: Any, required: bool,
                 base: Any) -> None:
        self.name = name
        self.kind = kind
        self.spec = spec
        self.default = default
        self.required = required
        self.base = base


_PARAMS: dict[Fn, list[Param]] = {}


def params_of(fn: Fn) -> list[Param]:
    """The declared parameters of a command function (its annotations, read once)."""
    if fn in _PARAMS:
        return _PARAMS[fn]
    code = fn.__code__
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    defaults = dict(zip(names[len(names) - len(fn.__defaults__ or ()):], fn.__defaults__ or (),
                        strict=True))
    defaults.update(fn.__kwdefaults__ or {})
    out = []
    for name in names:
        hint = _hint(fn, name)
        out.append(Param(name, _kind(hint.base), hint.spec, defaults.get(name, ...),
                         name not in defaults, hint.base))
    _PARAMS[fn] = out
    return out


def _hint(fn: Fn, name: str) -> Hint:
    """A parameter's `Annotated[T, spec]`, evaluated in its module (annotations are strings:
    every command module has `from __future__ import annotations`)."""
    raw = fn.__annotations__[name]
    hint = eval(raw, fn.__globals__) if isinstance(raw, str) else raw
    if not isinstance(hint, Hint):
        raise TypeError(f"{fn.__qualname__}({name}): declare it as Annotated[T, Opt(...)] or "
                        "Annotated[T, Arg(...)] with db0.cli.params.Annotated")
    return hint


def _kind(t: Any) -> type:
    """int, float, str, bool or list, from `T`, `T | None` or `list[str] | None`."""
    if isinstance(t, types.UnionType):
        args = [a for a in t.__args__ if a is not type(None)]
        return _kind(args[0]) if args else str
    if isinstance(t, types.GenericAlias):
        return list if t.__origin__ is list else str
    return t if isinstance(t, type) else str


# -- Typer's reading -----------------------------------------------------------------------------

def typer_command(fn: Fn, path: tuple[str, ...] = ()) -> Fn:
    """`fn` as Typer wants it: the same function, its signature's annotations turned into
    `typer.Option` / `typer.Argument`; running it records it as the command `explain` speaks
    for."""
    import inspect
    import typing

    import click
    import typer

    ps = []
    for p in params_of(fn):
        spec = p.spec
        extra: dict[str, Any] = {"help": spec.help, "show_default": spec.show_default}
        if spec.metavar:
            extra["metavar"] = spec.metavar
        if spec.choices:
            extra["click_type"] = click.Choice(spec.choices)
        if isinstance(spec, Opt):
            info = typer.Option(*spec.decls, hidden=spec.hidden, show_envvar=False, **extra)
        else:
            info = typer.Argument(**extra)
        annotation = typing.Annotated[p.base, info]  # type: ignore[name-defined]  # built at run time
        default = inspect.Parameter.empty if p.default is ... else p.default
        ps.append(inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=default, annotation=annotation))

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global running
        running = (path, fn)
        return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__signature__ = inspect.Signature(ps)  # type: ignore[attr-defined]
    # Typer reads the signature's annotations; the wrapper's own ("Any", strings) would be
    # evaluated where typing is not imported.
    wrapper.__annotations__ = {}
    return wrapper


def register(app: Any, commands: list[Command], groups: dict[str, str]) -> None:
    """Add a module's commands (and their groups, with their help) to the Typer app."""
    import typer

    subs: dict[str, Any] = {}
    for c in commands:
        target = app
        if len(c.path) > 1:
            group = c.path[0]
            if group not in subs:
                subs[group] = typer.Typer(help=groups.get(group, ""), no_args_is_help=True)
                app.add_typer(subs[group], name=group)
            target = subs[group]
        kw = {"context_settings": c.context_settings} if c.context_settings else {}
        target.command(c.path[-1], **kw)(typer_command(c.fn, c.path))


# -- the fast path --------------------------------------------------------------------------------

class NotSure(Exception):
    """The fast path hands this command line to Typer."""


def fast_parse(fn: Fn, args: list[str]) -> dict[str, Any]:
    """Keyword arguments for `fn` from a command line, or NotSure."""
    ps = params_of(fn)
    by_flag: dict[str, Param] = {}
    for p in ps:
        if isinstance(p.spec, Opt):
            for d in p.spec.decls:
                by_flag[d] = p
    positional = [p for p in ps if isinstance(p.spec, Arg)]
    given: dict[str, Any] = {}
    words: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--":
            words += list(it)
            break
        if a.startswith("-") and a != "-":
            flag, eq, value = a.partition("=")
            opt = by_flag.get(flag)
            if opt is None:
                raise NotSure(a)  # --help, a typo, a combined short option: Typer's job
            if opt.kind is bool:
                if eq:
                    raise NotSure(a)
                given[opt.name] = True
                continue
            if not eq:
                nxt = next(it, None)
                if nxt is None:
                    raise NotSure(a)
                value = nxt
            v = _value(opt, value)
            if opt.kind is list:
                given.setdefault(opt.name, []).append(v)
            else:
                given[opt.name] = v
        else:
            words.append(a)
    for p in positional:
        if p.kind is list:
            if words:
                given[p.name] = [_value(p, w) for w in words]
            words = []
        elif words:
            given[p.name] = _value(p, words.pop(0))
    if words:
        raise NotSure("extra arguments")
    out = {}
    for p in ps:
        if p.name in given:
            out[p.name] = given[p.name]
        elif p.required:
            raise NotSure(f"missing {p.name}")
        else:
            out[p.name] = p.default
    return out


def _value(p: Param, text: str) -> Any:
    if p.spec.choices and text not in p.spec.choices:
        raise NotSure(text)
    try:
        if p.kind is int:
            return int(text)
        if p.kind is float:
            return float(text)
    except ValueError:
        raise NotSure(text) from None
    return text


def fast_call(commands: list[Command], args: list[str]) -> int | None:
    """Run the command `args` names if the fast path is sure of it; None hands it to Typer."""
    for c in commands:
        n = len(c.path)
        if c.fast and tuple(args[:n]) == c.path:
            try:
                kwargs = fast_parse(c.fn, args[n:])
            except NotSure:
                return None
            global running
            running = (c.path, c.fn)
            rv = c.fn(**kwargs)
            return rv if isinstance(rv, int) else 0
    return None


# -- errors in the words of the command line -----------------------------------------------------

running: tuple[tuple[str, ...], Fn] | None = None  # the command this process runs, once it runs


def explain(e: Db0Error) -> Db0Error:
    """The daemon's refusal of a parameter (`memory.list: limit must be ...`, Db0Error.field)
    said in the words of the command that sent it: the option or argument the value came
    from (`-n/--limit must be ...`) and that command's --help. Any other error as it is."""
    if not e.field or running is None:
        return e
    path, fn = running
    rest = e.message.partition(f": {e.field} ")[2]
    if not rest:
        return e
    for p in params_of(fn):
        param = p.spec.param or p.name.rstrip("_")
        if e.field == param or e.field.startswith((f"{param}.", f"{param}[")):
            name = ("/".join(sorted(p.spec.decls, key=len)) if isinstance(p.spec, Opt)
                    else p.name.upper())
            return Db0Error(e.code, f"{name} {rest}", f"see: db0 {' '.join(path)} --help",
                            e.field)
    return e

