"""One resolver for user code, used by trainables and searchers alike.

A reference is ``FILE.py:NAME`` (relative to the sweep file's directory) or
``package.module:NAME`` (importable here); installed packages also register searchers by name
through the entry-point group ``raytune_hpo.searchers``. A module loaded from a file is
imported under its own name with its directory on ``sys.path`` (so the helper modules beside
it import too), and every module from that directory is pickled by value: Ray workers on any
node get the code with the trial, whether or not the files are there.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from raytune_hpo.errors import UserError

SEARCHER_GROUP = "raytune_hpo.searchers"


def is_reference(name: str) -> bool:
    """``FILE.py:NAME`` or ``package.module:NAME`` (a registry name has no colon)."""
    return isinstance(name, str) and ":" in name


def resolve(ref: str, *, base_dir: str | os.PathLike[str], field: str) -> Any:
    """The object ``ref`` names; ValueError (one line naming ``field``) when it can't be had."""
    target, sep, name = ref.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise UserError(
            f"{ref!r} is not FILE.py:NAME or package.module:NAME "
            "(e.g. train.py:train, mypkg.search:MySearch)",
            field=field,
        )
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = Path(base_dir) / path
        module = _import_file(path.resolve(), field)
        where = str(target)
    else:
        module = _import_module(target, field)
        where = target
    try:
        return getattr(module, name)
    except AttributeError:
        public = sorted(k for k in vars(module) if not k.startswith("_"))[:12]
        raise UserError(
            f"{where} has no {name!r}; it defines: {', '.join(public) or 'nothing'}", field=field
        ) from None


def _import_file(path: Path, field: str):
    if not path.is_file():
        raise UserError(f"file {str(path)!r} does not exist", field=field)
    directory = str(path.parent)
    name = path.stem
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__file__", None) != str(path):
        _forget(name, cached)  # another sweep's module of the same name
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = _import_module(name, field, user_file=path)
    _travel_by_value(directory)
    return module


def _forget(name: str, module: Any) -> None:
    """Drop ``module`` and the modules beside it from the import cache."""
    old_dir = os.path.dirname(getattr(module, "__file__", "") or "")
    for key, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None) or ""
        if key == name or (old_dir and os.path.dirname(f) == old_dir):
            del sys.modules[key]


def _import_module(target: str, field: str, user_file: Path | None = None):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if user_file is None and e.name and target.startswith(e.name):
            raise UserError(f"no module named {target!r} is installed here", field=field) from None
        raise UserError(f"importing {target} failed: {_where(e, user_file)}", field=field) from None
    except Exception as e:  # the user's code raised while it was imported
        raise UserError(f"importing {target} failed: {_where(e, user_file)}", field=field) from None


def _where(e: BaseException, user_file: Path | None) -> str:
    """``file:line: Type: message`` of the user's error, on one line."""
    message = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}: SyntaxError: {e.msg}"
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "importlib" not in f.filename and "raytune_hpo" not in f.filename]
    frame = ours[-1] if ours else (frames[-1] if frames else None)
    where = f"{frame.filename}:{frame.lineno}: " if frame else ""
    return f"{where}{type(e).__name__}: {message}"


def _travel_by_value(directory: str) -> None:
    """Pickle every module loaded from ``directory`` by value (cloudpickle), so Ray workers
    need not find the files."""
    from ray import cloudpickle

    prefix = os.path.join(directory, "")
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None) or ""
        if f.startswith(prefix):
            try:
                cloudpickle.register_pickle_by_value(mod)
            except ValueError:  # not importable by name: nothing to register
                continue


def entry_points(group: str = SEARCHER_GROUP) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def load_entry_point(name: str, *, group: str = SEARCHER_GROUP, field: str) -> Any:
    ep = entry_points(group)[name]
    try:
        return ep.load()
    except Exception as e:
        raise UserError(
            f"entry point {name!r} ({ep.value}) failed to load: {_where(e, None)}", field=field
        ) from None


__all__ = ["SEARCHER_GROUP", "entry_points", "is_reference", "load_entry_point", "resolve"]
