"""Plain `--help` pages: TEXT / INTEGER / NUMBER for values and nothing for flags, where typer
shows Python types (`<str>`, `<bool>`, `<list[str]>`) that mean little to someone at a shell."""

from __future__ import annotations

import enum
import inspect
import types
import typing

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup
from typer.models import ArgumentInfo, OptionInfo

_NAMES = {str: "TEXT", int: "INTEGER", float: "NUMBER"}


class PlainHelpCommand(TyperCommand):
    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""  # a flag: no value to describe
        return option

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument):
                # An argument's name (SOURCE) says what it is; its Python type says nothing more.
                param.display_type_rich = _no_type  # type: ignore[method-assign]
        return params


def _no_type(ctx) -> None:
    return None


class PlainHelpGroup(TyperGroup):
    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


def plain_help(app: typer.Typer) -> None:
    """Give every command of `app` (and of its sub-apps) plain metavars and help options."""
    if not isinstance(app.info.cls, type) or app.info.cls is TyperGroup:  # unset: a placeholder
        app.info.cls = PlainHelpGroup
    for command in app.registered_commands:
        if not isinstance(command.cls, type) or command.cls is TyperCommand:
            command.cls = PlainHelpCommand
        _plain_metavars(command.callback)
    if app.registered_callback is not None:
        _plain_metavars(app.registered_callback.callback)
    for group in app.registered_groups:
        if not isinstance(group.cls, type) or group.cls is TyperGroup:
            group.cls = PlainHelpGroup
        if group.typer_instance is not None:
            plain_help(group.typer_instance)


def _plain_metavars(callback) -> None:
    for parameter in inspect.signature(callback, eval_str=True).parameters.values():
        annotation = parameter.annotation
        if isinstance(callback.__annotations__.get(parameter.name), str):
            # A module with `from __future__ import annotations`: typer would evaluate the string
            # again into new OptionInfo objects. It reads these evaluated ones instead.
            callback.__annotations__[parameter.name] = annotation
        if typing.get_origin(annotation) is not typing.Annotated:
            continue
        kind, *extras = typing.get_args(annotation)
        for info in extras:
            if isinstance(info, ArgumentInfo) and info.metavar is None:
                info.metavar = parameter.name.upper()
            elif isinstance(info, OptionInfo) and info.metavar is None:
                info.metavar = metavar_for(kind)


def metavar_for(kind) -> str:
    """TEXT, INTEGER, NUMBER, `a|b` for choices, or nothing (a flag) for a Python type."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if typing.get_origin(kind) is list:
        kind = typing.get_args(kind)[0]
    if kind is bool:
        return ""
    if typing.get_origin(kind) is typing.Literal:
        return "|".join(str(choice) for choice in typing.get_args(kind))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "|".join(str(member.value) for member in kind)
    return _NAMES.get(kind, "TEXT")
