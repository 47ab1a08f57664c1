"""Atomic, durable writes of files and folders: the one place the package writes through.

Every file the package writes under a user's name goes through `write_atomic`
(or `write_text_atomic`, `write_json_atomic`): the content is written to a
temporary file beside the final name, flushed to disk (``fsync``), given the
permissions the user's umask asks for, and renamed over the final name; the
folder is then synced so the rename itself survives a crash. A reader sees
either the old file or the complete new one, never a half-written one.

Folders (saved models, saved encoders) go through `replace_folder`: the new
folder is written under a temporary name and synced; an existing folder under
the final name is replaced only when it is recognised as one the package wrote
(``is_ours``) and holds nothing else, by renaming it aside, renaming the new
one into place, and only then removing the old one. Any interruption leaves the
old or the new folder under the final name (plus, at worst, a hidden
``.<name>.*`` temporary folder beside it, removed by the next write of that
folder), and no user file is ever deleted.

`check_output` makes the same checks before any work, so that a long run does
not fail at its last step: an input given as the output, an existing output
without ``overwrite``, a folder where a file goes, a folder the package did not
write, a parent that is a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "NotOurFolderError",
    "OutputLockedError",
    "check_output",
    "fsync_path",
    "output_lock",
    "replace_folder",
    "umask_mode",
    "write_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


class NotOurFolderError(FileExistsError):
    """An existing folder would be replaced, but it was not written by this package."""


class OutputLockedError(BlockingIOError):
    """Another process is writing the same output (it holds the output's lock)."""


def umask_mode(directory: bool = False) -> int:
    """Permission bits a new file (or folder) gets under the process's umask.

    ``0o666 & ~umask`` for files, ``0o777 & ~umask`` for folders, as `open` and
    `os.mkdir` would give; `tempfile` creates 0600/0700 instead.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_path(path) -> None:
    """Flush a file's (or a folder's entries') data to disk; a no-op where folders cannot be opened."""
    path = Path(path)
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")


def check_output(
    path,
    *,
    overwrite: bool,
    inputs: Collection = (),
    is_ours: Callable[[Path], bool] | None = None,
    allowed: Collection[str] | None = None,
) -> Path:
    """Check before any work that ``path`` can be written as `write_atomic` or `replace_folder` would.

    Parameters
    ----------
    path : path-like
        The output: a file, or a folder when ``is_ours`` is given.
    overwrite : bool
        Whether an existing output may be replaced.
    inputs : collection of path-like, optional
        Files and folders the run reads (never modified): the output may be
        none of them, nor lie inside one of the folders.
    is_ours, allowed : optional
        For a folder output, as in `replace_folder`.

    Returns
    -------
    `~pathlib.Path`
        ``path``.

    Raises
    ------
    ValueError
        ``path`` is one of ``inputs`` or inside one.
    FileExistsError
        ``path`` exists and ``overwrite`` is False, or it is a folder the
        package did not write (`NotOurFolderError`).
    IsADirectoryError
        A file output names an existing folder.
    NotADirectoryError
        A parent of ``path`` is a file.
    """
    path = Path(path)
    target = path.resolve()
    for name in map(Path, inputs):
        source = name.resolve()
        if target == source or source in target.parents:
            raise ValueError(f"{path} is {'inside ' if target != source else ''}the input {name}, "
                             "which is never modified: choose another output")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"{path} cannot be written: {parent} is a file, not a folder")
    if is_ours is None:
        _check_target(path, overwrite)
    elif path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        _check_replaceable(path, is_ours, allowed)
    return path


def write_atomic(path, write: Callable[[Path], Any], *, overwrite: bool = False, suffix: str | None = None) -> Path:
    """Write a file through ``write(tmp_path)`` and rename it to ``path`` when complete.

    Parameters
    ----------
    path : str or path-like
        Final file name. Its folder is created if needed.
    write : callable
        Called with the temporary path (which exists, empty); it writes the
        whole content there (it may replace the file).
    overwrite : bool, optional
        Replace an existing file; without it an existing ``path`` raises
        `FileExistsError` before ``write`` is called.
    suffix : str, optional
        Suffix of the temporary file (default: the suffixes of ``path``, so
        writers that pick a format from the name see the right one).

    Returns
    -------
    `~pathlib.Path`
        ``path``.
    """
    path = Path(path)
    _check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_path(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)
    return path


def write_text_atomic(path, text: str, *, overwrite: bool = False, encoding: str = "utf-8") -> Path:
    """`write_atomic` for a string."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding=encoding), overwrite=overwrite)


def write_json_atomic(path, data: Any, *, overwrite: bool = True, indent: int | None = None) -> Path:
    """`write_atomic` for JSON (by default replacing an existing file, as for progress state)."""
    return write_text_atomic(path, json.dumps(data, indent=indent), overwrite=overwrite)


def _check_replaceable(path: Path, is_ours: Callable[[Path], bool], allowed: Collection[str] | None) -> None:
    if not path.is_dir() or path.is_symlink():
        raise NotOurFolderError(f"{path} exists and is not a folder written by astro_galpost; not replacing it")
    if not is_ours(path):
        raise NotOurFolderError(
            f"{path} exists and is not a folder written by astro_galpost (its marker file is missing or "
            "foreign); refusing to replace it: choose another path or remove it yourself")
    if allowed is not None:
        foreign = sorted(p.name for p in path.iterdir() if p.name not in allowed)
        if foreign:
            raise NotOurFolderError(
                f"{path} holds files astro_galpost did not write ({', '.join(foreign)}); refusing to replace "
                "it: move them out or choose another path")


@contextlib.contextmanager
def replace_folder(
    path,
    *,
    overwrite: bool = False,
    is_ours: Callable[[Path], bool],
    allowed: Collection[str] | None = None,
) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in for ``path``.

    Use as ``with replace_folder(path, ...) as tmp:`` and write the files into
    ``tmp``. On success every file is synced, the folder gets the umask's
    permissions, an existing ``path`` is renamed aside, ``tmp`` is renamed to
    ``path``, and the old folder is removed last. On an exception ``tmp`` is
    removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        Final folder.
    overwrite : bool, optional
        Allow replacing an existing ``path``.
    is_ours : callable
        ``is_ours(folder) -> bool``: whether an existing folder was written by
        the package (its marker file); other folders are never replaced.
    allowed : collection of str, optional
        Names an existing folder may hold; anything else makes it foreign.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    NotOurFolderError
        ``path`` exists but is not a folder the package wrote (checked before
        anything is written).
    """
    path = Path(os.path.abspath(path))
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        _check_replaceable(path, is_ours, allowed)
    with output_lock(path):  # one writer at a time, so leftovers of killed writers can go
        _remove_leftovers(path, allowed)
        tmp = _folder_temp_name(path, "tmp")
        tmp.mkdir(mode=0o700)
        try:
            yield tmp
            for child in tmp.iterdir():
                fsync_path(child)
                os.chmod(child, umask_mode())
            os.chmod(tmp, umask_mode(directory=True))
            fsync_path(tmp)
            _swap_in(tmp, path, is_ours, allowed, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _folder_temp_name(path: Path, kind: str) -> Path:
    """``.<name>.galpost-<12 hex>.<kind>`` beside ``path``: the only names `_remove_leftovers` removes."""
    return path.parent / f".{path.name}.galpost-{uuid.uuid4().hex[:12]}.{kind}"


def _remove_leftovers(path: Path, allowed: Collection[str] | None) -> None:
    """Remove the ``.tmp``/``.old`` folders that killed writers of ``path`` left: only names of
    `_folder_temp_name`'s form, holding only ``allowed`` names (a user's ``.m.backup.old`` stays)."""
    if allowed is None:
        return
    form = re.compile(rf"\.{re.escape(path.name)}\.galpost-[0-9a-f]{{12}}\.(tmp|old)")
    for leftover in path.parent.iterdir():
        if form.fullmatch(leftover.name) and leftover.is_dir() and not leftover.is_symlink() and \
                all(p.name in allowed for p in leftover.iterdir()):
            shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(tmp: Path, path: Path, is_ours, allowed, overwrite: bool) -> None:
    old = None
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        _check_replaceable(path, is_ours, allowed)  # again: it may have changed while we wrote
        old = _folder_temp_name(path, "old")
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if old is not None:
            os.rename(old, path)  # put the previous folder back
        raise
    fsync_path(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def output_lock(path) -> Iterator[Path]:
    """Hold an exclusive advisory lock on the output ``path`` while writing it.

    The lock is ``fcntl.flock`` on ``.<name>.lock`` beside ``path``: the
    operating system releases it when the process ends, however it ends, so a
    killed run never leaves a stale lock and a rerun can resume. The lock file
    is removed on release. Where ``fcntl`` does not exist (Windows) no lock is
    taken.

    Raises
    ------
    OutputLockedError
        Another process holds the lock: two runs must not write one output.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield Path(path)
        return
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, umask_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise OutputLockedError(
                f"another process is writing {path} (it holds {lock}); wait for it to finish or choose "
                "another output") from err
        if not lock.exists() or os.stat(lock).st_ino != os.fstat(fd).st_ino:
            # the holder released and removed it between our open and flock
            raise OutputLockedError(f"another process was writing {path} just now; run again")
        try:
            yield path
        finally:
            lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
