"""One place for where sweeps live: local paths and ``s3://`` / ``gs://`` URIs, through
``pyarrow.fs`` (the file systems Ray Tune itself writes with).

A URI may carry pyarrow's options as a query (``s3://bucket/dir?endpoint_override=HOST:PORT&
scheme=http``); ``join`` keeps the query at the end. Credentials and endpoints otherwise come
from the usual environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``; ``GOOGLE_APPLICATION_CREDENTIALS``), as for Ray. A storage error (no
such bucket, no credentials, no connection) is a one-line ``UserError``, which shows the URI as
``display`` does: credentials a URI may carry (``s3://KEY:SECRET@bucket``, ``?secret_key=``,
``?session_token=``...) are hidden. ``download`` refuses a key with a ``..`` component: nothing
lands outside its directory.

Every whole file written here is whole or not there, whenever the writer is killed: locally
through a temporary file and a rename, on an object store by its single PUT. Ray Tune writes
its own files (the experiment state, the searcher's, each trial's results) in place on a local
disk, so a run gets ``ray_filesystem``: the local file system, each output written the same way.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import io
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from raytune_hpo.errors import UserError


def is_uri(path: str | os.PathLike[str]) -> bool:
    return "://" in str(path)


def normalize(path: str | os.PathLike[str]) -> str:
    """A URI as it is (without a trailing slash); a local path made absolute."""
    if is_uri(path):
        parts = urlsplit(str(path))
        return urlunsplit(parts._replace(path=parts.path.rstrip("/")))
    return str(Path(path).expanduser().resolve())


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base/part/...``; a URI's query stays at its end."""
    if not is_uri(base):
        return os.path.join(str(base), *parts)
    split = urlsplit(str(base))
    path = "/".join([split.path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urlunsplit(split._replace(path=path))


def parent(path: str | os.PathLike[str]) -> str:
    """The directory holding ``path`` (a URI keeps its scheme, bucket and query)."""
    if not is_uri(path):
        return str(Path(normalize(path)).parent)
    split = urlsplit(str(path))
    return urlunsplit(split._replace(path=split.path.rstrip("/").rsplit("/", 1)[0] or "/"))


def name(path: str | os.PathLike[str]) -> str:
    """The last component (a URI's query left out)."""
    p = urlsplit(str(path)).path if is_uri(path) else str(path)
    return p.rstrip("/").rsplit("/", 1)[-1]


# Query options of a URI that may carry credentials (pyarrow's access_key, secret_key,
# session_token; GCS's access_token...): their values are never shown.
_SECRET_OPTION = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)
HIDDEN = "***"


def _secrets_of(path: str | os.PathLike[str]) -> list[str]:
    """The credentials ``path`` carries: a password in its netloc, secret query values."""
    if not is_uri(path):
        return []
    split = urlsplit(str(path))
    found = [split.password] if split.password else []
    pairs = parse_qsl(split.query, keep_blank_values=True)
    return found + [v for k, v in pairs if v and _SECRET_OPTION.search(k)]


def display(path: str | os.PathLike[str]) -> str:
    """``path`` as messages show it: a URI's credentials replaced by ``***``."""
    text = str(path)
    if not is_uri(path):
        return text
    split = urlsplit(text)
    netloc = split.netloc
    if split.password:
        netloc = netloc.replace(f":{split.password}@", f":{HIDDEN}@", 1)
    pairs = parse_qsl(split.query, keep_blank_values=True)
    query = "&".join(f"{k}={HIDDEN if _SECRET_OPTION.search(k) else v}" for k, v in pairs)
    return urlunsplit(split._replace(netloc=netloc, query=query))


def scrub(text: str, path: str | os.PathLike[str]) -> str:
    """``text`` (a message about ``path``) without the credentials ``path`` carries."""
    for secret in _secrets_of(path):
        text = text.replace(secret, HIDDEN)
    return text


# The environment variables a remote file system is built from (part of the cache key).
_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")


@functools.lru_cache(maxsize=16)
def _remote(scheme: str, netloc: str, query: str, env: tuple):
    import pyarrow.fs as pafs

    uri = urlunsplit((scheme, netloc, "/", query, ""))
    fs, _ = pafs.FileSystem.from_uri(uri)
    return fs


def filesystem(path: str | os.PathLike[str]):
    """``(pyarrow FileSystem, path on it)`` for a local path or a URI."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return pafs.LocalFileSystem(), normalize(path)
    split = urlsplit(str(path))
    with errors(path):
        fs = _remote(split.scheme, split.netloc, split.query, tuple(map(os.getenv, _ENV)))
    return fs, f"{split.netloc}{split.path}".rstrip("/")


@contextlib.contextmanager
def errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """A storage failure as one line naming the path (with a hint for remote storage)."""
    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError) as e:
        if not is_uri(path) and isinstance(e, ValueError):
            raise
        text = scrub(" ".join(str(e).split()), path)[:300]
        hint = ""
        if is_uri(path) and any(
            w in text for w in ("ACCESS_DENIED", "credentials", "NETWORK", "Forbidden", "403")
        ):
            hint = (
                " (check the credentials and endpoint: AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL or "
                "GOOGLE_APPLICATION_CREDENTIALS)"
            )
        raise UserError(f"{text}{hint}", source=display(path)) from None


def _info(path: str | os.PathLike[str]):
    fs, p = filesystem(path)
    with errors(path):
        return fs.get_file_info(p)


def exists(path: str | os.PathLike[str]) -> bool:
    import pyarrow.fs as pafs

    return _info(path).type != pafs.FileType.NotFound


def is_file(path: str | os.PathLike[str]) -> bool:
    import pyarrow.fs as pafs

    return _info(path).type == pafs.FileType.File


def is_dir(path: str | os.PathLike[str]) -> bool:
    """A directory (on object stores: any object below the prefix)."""
    import pyarrow.fs as pafs

    return _info(path).type == pafs.FileType.Directory


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    fs, p = filesystem(path)
    with errors(path), fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str | os.PathLike[str]) -> str:
    return read_bytes(path).decode("utf-8")


# A file being written beside its final name (``._name.<hex>.part``): left by a killed writer,
# never read, removed by ``remove_leftovers``.
PART_SUFFIX = ".part"


def _part_name(final: str) -> str:
    head, _, name = final.rpartition("/")
    return f"{head}/.{name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}" if head else f".{name}.part"


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a whole file; locally through a temporary file and a rename, so a reader (or a
    killed writer) never leaves half of it (an object store's PUT is whole by itself)."""
    if not is_uri(path):
        p = Path(normalize(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(_part_name(str(p)))
        tmp.write_bytes(data)
        tmp.replace(p)
        return
    fs, p = filesystem(path)
    with errors(path), fs.open_output_stream(p) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def move(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move a file (a rename on a local disk; copy and delete on an object store)."""
    fs, s = filesystem(src)
    _, d = filesystem(dest)
    if not is_uri(dest):
        Path(d).parent.mkdir(parents=True, exist_ok=True)
    with errors(src):
        fs.move(s, d)


def delete(path: str | os.PathLike[str]) -> None:
    """Delete a file; nothing when it is not there."""
    import pyarrow.fs as pafs

    fs, p = filesystem(path)
    with errors(path):
        if fs.get_file_info(p).type == pafs.FileType.File:
            fs.delete_file(p)


def delete_tree(path: str | os.PathLike[str]) -> None:
    """Delete a directory and all it holds; nothing when it is not there."""
    import pyarrow.fs as pafs

    fs, p = filesystem(path)
    with errors(path):
        if fs.get_file_info(p).type == pafs.FileType.Directory:
            fs.delete_dir(p)


def listdir(path: str | os.PathLike[str]) -> list[str]:
    """Names of the entries directly under ``path`` (sorted; none when it does not exist)."""
    import pyarrow.fs as pafs

    fs, p = filesystem(path)
    with errors(path):
        infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(i.base_name for i in infos)


def glob(path: str | os.PathLike[str], pattern: str) -> list[str]:
    """Paths of the entries directly under ``path`` whose names match ``pattern``."""
    return [join(path, n) for n in listdir(path) if fnmatch.fnmatch(n, pattern)]


def download(
    path: str | os.PathLike[str], dest: Path, keep: Callable[[str], bool] | None = None
) -> int:
    """Copy the tree at ``path`` into the local directory ``dest``; ``keep(relative_path)``
    selects files (e.g. leave checkpoints behind). Returns the number of files copied. A key
    with a ``..`` component (it could land outside ``dest``) is a UserError; nothing of the
    tree is copied then."""
    import pyarrow.fs as pafs

    fs, root = filesystem(path)
    with errors(path):
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    files = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(root) :].lstrip("/")
        if ".." in rel.split("/"):
            raise UserError(
                f"the key {rel!r} has a '..' component and would be written outside the "
                f"download directory; nothing was downloaded",
                source=display(path),
            )
        if keep is None or keep(rel):
            files.append((info, rel))
    copied = 0
    for info, rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with errors(path), fs.open_input_stream(info.path) as f:
            target.write_bytes(f.read())
        copied += 1
    return copied


@contextlib.contextmanager
def local_copy(
    path: str | os.PathLike[str], keep: Callable[[str], bool] | None = None
) -> Iterator[Path]:
    """A local directory holding ``path``'s tree: a local path is yielded as it is; a URI is
    downloaded (the files ``keep`` selects) into a temporary directory removed afterwards."""
    if not is_uri(path):
        yield Path(normalize(path))
        return
    tmp = Path(tempfile.mkdtemp(prefix="raytune-hpo-"))
    try:
        download(path, tmp, keep)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(path: str | os.PathLike[str]) -> int:
    """Delete the partial files killed writers left anywhere under the local directory
    ``path`` (none on object stores); their number."""
    if is_uri(path):
        return 0
    gone = 0
    for p in Path(normalize(path)).rglob(f".*{PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            p.unlink()
            gone += 1
    return gone


class _WholeFile(io.FileIO):
    """A local file written under a temporary name and renamed to its own when closed."""

    def __init__(self, final: str) -> None:
        self._final, self._part = final, _part_name(final)
        super().__init__(self._part, "wb")

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.replace(self._part, self._final)


class WholeFilesHandler:
    """A ``pyarrow.fs.FileSystemHandler`` over the local file system in which every output
    stream is a whole file (``_WholeFile``); the rest is the local file system's.
    (Subclassed from pyarrow's ABC in ``ray_filesystem``, so that importing this module
    imports no pyarrow.)"""

    def __init__(self) -> None:
        import pyarrow.fs as pafs

        self._fs = pafs.LocalFileSystem()

    def __reduce__(self):  # Ray ships the file system to the trials' workers
        return (_make_handler, ())

    def __eq__(self, other) -> bool:
        return type(other) is type(self)

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(type(self))

    def get_type_name(self) -> str:
        return "raytune-hpo-local"

    def normalize_path(self, path):
        return self._fs.normalize_path(path)

    def get_file_info(self, paths):
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self._fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self._fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("raytune-hpo never deletes the root of the file system")

    def delete_file(self, path):
        self._fs.delete_file(path)

    def move(self, src, dest):
        self._fs.move(src, dest)

    def copy_file(self, src, dest):
        import pyarrow as pa

        with self._fs.open_input_stream(src) as f, pa.PythonFile(_WholeFile(dest), "w") as out:
            while chunk := f.read(1 << 22):
                out.write(chunk)

    def open_input_stream(self, path):
        return self._fs.open_input_stream(path)

    def open_input_file(self, path):
        return self._fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        import pyarrow as pa

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return pa.PythonFile(_WholeFile(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self._fs.open_append_stream(path)


@functools.cache
def _handler_class():
    import pyarrow.fs as pafs

    return type("WholeFiles", (WholeFilesHandler, pafs.FileSystemHandler), {})


def _make_handler():
    return _handler_class()()


def ray_filesystem(root: str | os.PathLike[str]):
    """The file system Ray Tune gets for a sweep under ``root`` (``RunConfig`` and
    ``Tuner.restore``'s ``storage_filesystem``): on a local disk, the local file system with
    each file written whole (Ray writes its experiment state, the searcher's and the trials'
    results in place, which a kill cuts short); None for a URI, whose store writes whole
    objects and which Ray builds from the URI itself."""
    if is_uri(root):
        return None
    import pyarrow.fs as pafs

    return pafs.PyFileSystem(_make_handler())


def upload(src: Path, path: str | os.PathLike[str]) -> None:
    """Copy the local files directly in ``src`` to the directory ``path`` (local or URI)."""
    for f in sorted(src.iterdir()):
        if f.is_file():
            write_bytes(join(path, f.name), f.read_bytes())


__all__ = [
    "delete",
    "delete_tree",
    "display",
    "download",
    "errors",
    "exists",
    "filesystem",
    "glob",
    "is_dir",
    "is_file",
    "is_uri",
    "join",
    "listdir",
    "local_copy",
    "move",
    "name",
    "normalize",
    "parent",
    "read_bytes",
    "ray_filesystem",
    "read_text",
    "remove_leftovers",
    "scrub",
    "upload",
    "write_bytes",
    "write_text",
]
