"""The flags of the installed backends, made from their `Options` models.

`BackendOptionsCommand` is the click command class of the commands that embed (`embed`, `run`,
`search`, `text-embed`): it adds `--backend` and one option per field of every installed backend's
`Options` (`--field-name`, its description as help, its default), under one help panel per
backend. The values go to `ctx.meta`, not to the command's function: the command builds its
backend with `backend_from_context(ctx)` when it needs one (a usage error loads no model).

The options are made on first use (`get_params`), so `imgvec --help` and the commands that embed
nothing import neither pydantic nor any backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

# typer's own annotation -> option conversion, as for a signature. Private: typer has no public
# way to make an option outside a function signature; pyproject pins typer to a tested minor.
from typer.main import _get_param
from typer.models import ParamMeta

from pipeline.cli.help import PlainHelpCommand, metavar_for
from pipeline.errors import ImgvecError

if TYPE_CHECKING:
    from pipeline.core.space import EmbeddingSpace
    from pipeline.embedding.backends.base import EmbeddingBackend

_VALUES = "imgvec.backend_options"  # ctx.meta key: option name -> value as parsed
_UNSET_SOURCES = {"DEFAULT", "DEFAULT_MAP"}  # click's ParameterSource names of a value not given


class BackendOptionsCommand(PlainHelpCommand):
    _backend_params: list | None = None

    def get_params(self, ctx):
        if self._backend_params is None:
            self._backend_params = _backend_params()
            self.params.extend(self._backend_params)
        return super().get_params(ctx)


def backend_from_context(ctx: typer.Context) -> EmbeddingBackend:
    """The backend the command line chose, built from its own flags as given (`Options` fills in
    the rest); the other backends' flags that were given go to its `check_other_options`."""
    backend, own, others = _chosen(ctx)
    model = backend.from_options(**own)
    backend.check_other_options(model.space, others)
    return model


def space_from_context(ctx: typer.Context) -> EmbeddingSpace:
    """The space the command line's backend flags select, for a command that only reads stored
    vectors: built from the flags alone (Vertex AI's needs no credentials for it)."""
    backend, own, others = _chosen(ctx)
    space = backend.space_from_options(**own)
    backend.check_other_options(space, others)
    return space


def backend_flags_given(ctx: typer.Context) -> bool:
    """Whether the command line gave any backend flag, `--backend` too."""
    return any(_given(ctx, name) for name in ctx.meta[_VALUES])


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in _UNSET_SOURCES


def _chosen(ctx: typer.Context) -> tuple[type[EmbeddingBackend], dict, dict]:
    """The chosen backend's class, its own flags as given, and other backends' flags given."""
    from pipeline import plugins

    values = dict(ctx.meta[_VALUES])
    backend = plugins.backend_class(values.pop("backend"))
    given = {name: value for name, value in values.items() if _given(ctx, name)}
    own = backend.Options.model_fields
    return (
        backend,
        {name: v for name, v in given.items() if name in own},
        {name: v for name, v in given.items() if name not in own},
    )


def _keep(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> None:
    ctx.meta.setdefault(_VALUES, {})[param.name] = value


def _backend_params() -> list:
    from pipeline import plugins

    names = plugins.backend_names()
    params = [
        _option(
            "backend",
            str,
            names[0],
            f"Embedding backend: {', '.join(names)}.",
            panel=None,
        )
    ]
    declared: set[str] = set()
    for name in names:
        try:
            backend = plugins.backend_class(name)
        except ImgvecError:  # not loadable here (an extra missing): its flags are not offered,
            continue  # and choosing it says why

        for field_name, field in backend.Options.model_fields.items():
            if field_name in declared:  # one flag for a name several backends take
                continue
            declared.add(field_name)
            params.append(
                _option(
                    field_name,
                    field.annotation,
                    field.default,
                    field.description,
                    panel=getattr(backend, "help_panel", f"{name} (--backend {name})"),
                )
            )
    return params


def _option(name: str, annotation, default, help: str | None, *, panel: str | None):
    info = typer.Option(
        default,
        help=help,
        metavar=metavar_for(annotation),
        rich_help_panel=panel,
        callback=_keep,
        expose_value=False,
        show_default=default is not None,
    )
    return _get_param(ParamMeta(name=name, default=info, annotation=annotation))
