"""Atomic writes: a reader (or a crash, a kill, a full disk) never sees a half-written file, directory or set of
files; a write that fails raises `WriteError` ("cannot write <path>: <reason>") and leaves the previous version.

One mechanism for every stage:
- `atomic_file(path)`: a temp file beside `path`, renamed over it when the block ends without error.
- `atomic_dir(path)`: a temp directory beside `path`, swapped in for it in one step (Linux renameat2
  RENAME_EXCHANGE; elsewhere two renames, and the next writer restores `.<name>.old` if it finds `<name>` gone).
- `write_files_together({path: data})`: several files in one directory appear together or not at all.
- `check_writable(path)`: fails now, before the heavy work, when the output could not be created later.
Temp names carry the writer's host and pid (`.<name>.<host>-<pid>-<random>.tmp`); a later writer of the same
name removes those whose process is gone, so a killed writer leaves nothing behind for long.
Files get the mode of a plain `open()` and directories that of `mkdir` (0666/0777 less the umask), never the
0600/0700 of mkstemp/mkdtemp. Torch-free: the data stage and eval/ use it too.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["WriteError", "writing", "atomic_file", "atomic_dir", "write_files_together", "check_writable",
           "json_text", "finite_json"]


class WriteError(OSError):
    """An output that cannot be written; str() is the whole user-facing message: cannot write <path>: <reason>."""

    def __init__(self, path: str | os.PathLike, reason: str, errno_: int | None = None) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = Path(path), reason
        self.errno = errno_

    def __str__(self) -> str:
        return self.args[0]


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError of the block into a WriteError naming `path` (a WriteError passes unchanged)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(path, _reason(e), e.errno) from None


# ---------------------------------------------------------------------------------------------- temp names
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]+\.(?:tmp|bak)$")


def _temp_path(path: Path, suffix: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.{suffix}")


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: someone else's live process
        return False
    return False


def remove_stale_temporaries(path: Path) -> None:
    """Remove temp files/dirs of `path` left by killed writers on this host; put back a `.name.old` that a
    two-rename swap left when `path` itself is missing."""
    parent = path.parent
    old = parent / f".{path.name}.old"
    with contextlib.suppress(OSError):
        if old.is_dir() and not os.path.lexists(path):
            os.rename(old, path)
        elif old.is_dir():  # the swap got as far as the new directory: the old one is garbage
            shutil.rmtree(old, ignore_errors=True)
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and m["name"] == path.name and m["host"] == _HOST and _process_gone(int(m["pid"])):
            _remove(Path(entry.path))


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _make_parent(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a component is a file (mkdir -p reports that as "exists")
        raise WriteError(path, f"{_blocking_component(parent)} is not a directory", errno.ENOTDIR) from None
    except NotADirectoryError:
        raise WriteError(path, f"{_blocking_component(parent)} is not a directory", errno.ENOTDIR) from None


def _blocking_component(path: Path) -> Path:
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            return p
    return path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM over a few renames, so Ctrl-C cannot split a set of files (SIGKILL still can)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# ---------------------------------------------------------------------------------------------- one file
def _temp_file_for(path: Path) -> Path:
    """A fresh temp name beside `path`, whose parent now exists; `path` must not be a directory, and temp files a
    killed writer left for it are removed."""
    _make_parent(path)
    if path.is_dir():
        raise WriteError(path, "is a directory", errno.EISDIR)
    remove_stale_temporaries(path)
    return _temp_path(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temp file beside `path`; it replaces `path` only if the block finishes without error.
    An OSError (full disk, read-only place, a file where a directory should be) becomes a WriteError."""
    if "w" not in mode:
        raise ValueError(f"atomic_file writes a whole file: mode must contain 'w', got {mode!r}")
    path = Path(path)
    with writing(path):
        tmp = _temp_file_for(path)
        try:
            with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:  # 0666 less the umask, like open(path)
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------- several files
def write_files_together(files: Mapping[str | os.PathLike, str | bytes]) -> None:
    """Write every file (text as UTF-8 with LF line ends, or bytes) so that all appear or none changes: every
    temp file is complete before the first rename; a failed rename puts the earlier ones back."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            target = Path(target)
            with writing(target):
                tmp = _temp_file_for(target)
                staged.append((target, tmp))
                with open(tmp, "xb") as f:
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
                    f.flush()
                    os.fsync(f.fileno())
        with _signals_held():
            _rename_all(staged)
    finally:
        for _, tmp in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for parent in {t.parent for t, _ in staged}:
        _fsync_dir(parent)


def _rename_all(staged: list[tuple[Path, Path]]) -> None:
    backups: list[tuple[Path, Path | None]] = []
    try:
        for target, tmp in staged:
            with writing(target):
                backup = None
                if target.exists():
                    backup = _temp_path(target, "bak")
                    try:
                        os.link(target, backup)
                    except OSError:  # no hard links here: copy, so a failure can still put it back
                        shutil.copy2(target, backup)
                backups.append((target, backup))
                os.replace(tmp, target)
    except BaseException:
        for target, backup in reversed(backups):
            with contextlib.suppress(OSError):
                os.replace(backup, target) if backup else os.unlink(target)
        raise
    finally:
        for _, backup in backups:
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(backup)


# ---------------------------------------------------------------------------------------------- directories
@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, keep_old: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside `path`; it becomes `path` (replacing an old one) only on success, in one
    step. `keep_old=True` carries every entry of the old `path` that the block did not write into the new one
    (hard links, so no copy), e.g. the splits of a dataset not rebuilt this time."""
    path = Path(path)
    with writing(path):
        _make_parent(path)
        remove_stale_temporaries(path)
        if os.path.lexists(path) and not path.is_dir():
            raise WriteError(path, "exists and is not a directory", errno.ENOTDIR)
        tmp = _temp_path(path)
        os.mkdir(tmp)  # 0777 less the umask, like mkdir(1)
    try:
        try:
            yield tmp
            if keep_old and path.is_dir():
                _carry_over(path, tmp)
        except WriteError as e:
            raise WriteError(_outside(e.path, tmp, path), e.reason, e.errno) from None
        except OSError as e:
            raise WriteError(_outside(Path(e.filename or path), tmp, path), _reason(e), e.errno) from None
        with writing(path), _signals_held():
            _swap_in(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(path.parent)


def _outside(p: Path, tmp: Path, path: Path) -> Path:
    """A path inside the temp dir as the user will know it: inside the final directory."""
    try:
        return path / Path(p).relative_to(tmp)
    except ValueError:
        return Path(p)


def _carry_over(old: Path, new: Path) -> None:
    for entry in os.scandir(old):
        target = new / entry.name
        if os.path.lexists(target) or (entry.name.startswith(".") and entry.name.endswith((".tmp", ".bak"))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, target)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


_EXCHANGE = _renameat2()


def _swap_in(tmp: Path, path: Path) -> None:
    """Make `tmp` be `path`; the old `path` ends up at `tmp` (and is removed by the caller)."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if _EXCHANGE is not None:
        if _EXCHANGE(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(path))
    # Two renames; a kill between them leaves `.name.old`, which the next writer's remove_stale_temporaries restores.
    old = path.with_name(f".{path.name}.old")
    _remove(old)
    os.rename(path, old)
    os.rename(tmp, path)
    os.rename(old, tmp)


# ---------------------------------------------------------------------------------------------- checks, JSON
def check_writable(path: str | os.PathLike, kind: str = "file") -> None:
    """Raise WriteError now if `path` (a "file" or a "dir") could not be written later: a component that is a
    file, the wrong kind of thing already there, or a place where no file can be created (tried for real, which
    also works as root: a read-only file system, /proc, ...). Creates nothing that stays."""
    path = Path(path)
    with writing(path):
        if path.is_dir() and kind == "file":
            raise WriteError(path, "is a directory", errno.EISDIR)
        if os.path.lexists(path) and not path.is_dir() and kind == "dir":
            raise WriteError(path, "exists and is not a directory", errno.ENOTDIR)
        where = _blocking_component(path.parent)
        if not where.is_dir():
            raise WriteError(path, f"{where} is not a directory", errno.ENOTDIR)
        probe = _temp_path(where / "write-check")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN/inf float replaced by None: strict JSON has no NaN, and null says "no value"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None, sort_keys: bool = False, ensure_ascii: bool = True) -> str:
    """Strict JSON (NaN/inf written as null, never as bare NaN) for every JSON file the project writes."""
    return json.dumps(finite_json(obj), indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                      allow_nan=False)
