"""Outputs as transactions, run-folder locks and content hashes.

Every artifact slimspec writes goes through an :class:`OutputTransaction`: all files of
one command are written to temporaries in their target folders, fsynced, and renamed onto
their final names only once every one of them is complete. The guarantees:

* **No collision.** Outputs are compared with the command's inputs and with each other by
  real path (symlinks resolved) and by inode (hard links): ``prune w.safetensors --out
  w.safetensors --force`` is refused with :class:`~slimspec.errors.OutputConflictError`
  before anything runs, and the trained weights stay untouched. The inputs are every file
  the command reads: inside :func:`command_inputs` (every CLI command runs in one) each
  reader calls :func:`note_input`, and every transaction of the command checks its outputs
  against every file noted, whichever comes first (an input read after its name was
  reserved as an output is refused then, before anything is renamed).
* **Files, not folders.** An output named with a trailing separator (``newdir/``) or naming
  an existing folder is refused; nothing named ``newdir`` is written.
* **No clobbering.** An existing output is refused (:class:`~slimspec.errors.OutputExistsError`)
  unless ``force``. Only final names count: a stale ``.NAME.*.tmp`` left by a killed run
  never blocks a rerun (it is removed under the lock).
* **All or nothing.** On any failure (an exception, ``ENOSPC``, ``EACCES``,
  ``KeyboardInterrupt``), before or during the renames, what this run wrote is removed and
  files it replaced are restored from a hard-linked backup; folders it created are removed
  when empty.
* **One writer.** Each output holds an exclusive, non-blocking ``flock`` on ``.NAME.lock``
  next to it from :meth:`OutputTransaction.reserve` to the end of the transaction, so a
  second process writing the same file fails at once with :class:`OutputBusyError` (and two
  racing commands never leave a spec next to weights of the other run).

:func:`claim_run_dir` is the same idea for a training run folder, locked for the run's
whole lifetime; its ``force`` reset refuses, before deleting anything, when a file it would
delete is an input of the command.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import glob
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ..errors import OutputConflictError, OutputExistsError

PathLike = str | os.PathLike
Writer = Callable[[Path], None]
LOCK_SUFFIX = ".lock"
RUN_LOCK_NAME = ".slimspec-run.lock"
WEIGHTS_SUFFIX = ".safetensors"


class OutputBusyError(OutputConflictError):
    """Another process holds the lock of an output file or run folder."""


# --------------------------------------------------------------------------- locks


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid.isdigit() else ""


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` (created; removed again on release).

    The lock file is unlinked while still locked, so a lock file is never left behind by
    a clean exit; :meth:`acquire` re-checks that the file it locked is still the one at
    ``path`` (a racing releaser may have just unlinked it) and retries if not. A process
    killed while holding the lock leaves the file, but not the lock: the kernel drops
    ``flock`` locks with the process, and the next :meth:`acquire` simply takes it.
    """

    def __init__(self, path: PathLike, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> "FileLock":
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _lock_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputBusyError(f"{self.what}: in use by another slimspec process{holder}; "
                                          f"try again when it has finished") from None
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                self.fd = fd
                return self
            os.close(fd)  # the file we locked was unlinked by its previous holder: lock the new one
        raise OutputBusyError(f"{self.what}: could not take the lock {self.path}")

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing drops the flock


def lock_path_for(path: PathLike) -> Path:
    """The lock file guarding an output: ``.NAME.lock`` in the same folder."""
    target = Path(path)
    return target.with_name(f".{target.name}{LOCK_SUFFIX}")


# --------------------------------------------------------------------------- paths


def _same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name one file: same real path, or same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def names_a_folder(path: PathLike) -> str | None:
    """Why ``path`` cannot name an output file (a trailing separator, an existing folder), or None."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        return "an empty output name; give a file name"
    if text.endswith(("/", os.sep)):
        return f"{text}: names a folder (it ends with '{text[-1]}'); give a file name, e.g. {text}NAME"
    if os.path.isdir(text) or Path(text).name in ("", ".", ".."):
        return f"{text}: names a folder; give a file name, e.g. {text.rstrip('/' + os.sep)}{os.sep}NAME"
    return None


def _refuse_folder(path: PathLike) -> None:
    problem = names_a_folder(path)
    if problem is not None:
        raise OutputConflictError(problem)


# --------------------------------------------------------------------------- a command's inputs


@dataclass
class CommandInputs:
    """Every file one command has read so far, and its transactions still open (see :func:`command_inputs`)."""

    files: list[Path] = field(default_factory=list)
    transactions: list["OutputTransaction"] = field(default_factory=list)


_INPUTS: ContextVar[CommandInputs | None] = ContextVar("slimspec_command_inputs", default=None)


@contextmanager
def command_inputs() -> Iterator[CommandInputs]:
    """The scope of one command: every file noted by :func:`note_input` inside it is an input.

    Every output transaction and run-folder claim inside the scope refuses to write (or, for
    a ``force`` claim, delete) any of those files, by real path and by inode, whichever
    happens first. Re-entrant: an inner scope is the outer one (the CLI opens one per
    command; :func:`slimspec.train` opens its own when called from Python).
    """
    current = _INPUTS.get()
    if current is not None:
        yield current
        return
    scope = CommandInputs()
    token = _INPUTS.set(scope)
    try:
        yield scope
    finally:
        _INPUTS.reset(token)


def note_input(path: PathLike | None) -> PathLike | None:
    """Record that the current command reads ``path`` (a no-op outside :func:`command_inputs`).

    Called by every reader (specs, plans, weights, state dicts, latency tables, JSON
    results, the modules ``import python:`` executes) before it reads; a folder (a data
    set's image tree) protects the files in it. Raises
    :class:`~slimspec.errors.OutputConflictError` when an open transaction of the command
    has already reserved that file as an output. Returns ``path``.
    """
    scope = _INPUTS.get()
    if scope is None or path is None:
        return path
    try:
        if not os.path.lexists(path):
            return path  # not a file (a stock spec name, YAML text): nothing to protect
    except (TypeError, ValueError):  # not a path at all (e.g. text with a NUL byte)
        return path
    source = Path(path)
    scope.files.append(source)
    for transaction in scope.transactions:
        transaction.check_inputs(source)
    return path


def reads_inputs(func: Callable) -> Callable:
    """Run ``func`` inside :func:`command_inputs` (for API functions that read and write files)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with command_inputs():
            return func(*args, **kwargs)

    return wrapper


def noted_inputs() -> list[Path]:
    """The files the current command has read so far (empty outside :func:`command_inputs`)."""
    scope = _INPUTS.get()
    return list(scope.files) if scope is not None else []


def _inside(path: Path, folder: PathLike) -> bool:
    """True if ``path`` (resolved, symlinks of its folders followed) lies inside the folder ``folder``."""
    real = os.path.join(os.path.realpath(path.parent), path.name)
    root = os.path.realpath(folder)
    return real != root and os.path.commonpath([real, root]) == root


def _clobbers(output: Path, source: Path) -> str | None:
    """How writing (or deleting) ``output`` would destroy the input ``source``, or None.

    A file input: ``output`` is the same file (real path or inode). A folder input (a data
    set's image tree): ``output`` is an existing file inside it; new files beside are allowed.
    """
    if _same_file(output, source):
        return "" if str(output) == str(source) else f" (the same file as input {source})"
    if os.path.isdir(source) and os.path.lexists(output) and _inside(output, source):
        return f" (a file of input folder {source})"
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(target: Path) -> int:
    """The mode a new file would get (0666 minus the umask), or the existing target's mode."""
    try:
        return os.stat(target).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def weights_beside(spec_path: PathLike) -> Path:
    """The weights file that goes with a spec file: its name with ``.safetensors`` (``prune``, ``import``)."""
    return Path(spec_path).with_suffix(WEIGHTS_SUFFIX)


def check_writable(path: PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path, raising :class:`OutputExistsError` if it exists and ``overwrite`` is false."""
    _refuse_folder(path)
    target = Path(path)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise OutputExistsError(target)
    return target


# --------------------------------------------------------------------------- transactions


@dataclass
class _Output:
    path: Path
    lock: FileLock
    tmp: Path | None = None
    backup: Path | None = None
    sealed: bool = False
    renamed: bool = False


@dataclass
class OutputTransaction:
    """Write several files as one unit: all of them appear, or none changes.

    Usage (a CLI command writing a spec and its weights)::

        with OutputTransaction(force=force) as tx:
            tx.check_inputs(weights, plan)          # refuse --out == an input, before any work
            spec_out = tx.reserve(out)              # conflict + existence check, lock taken now
            weights_out = tx.reserve(weights_path)
            result = expensive_work()
            tx.write(weights_out, lambda tmp: save(result, tmp))   # to a temporary, fsynced
            tx.write(spec_out, result.text)
        # leaving the block renames every temporary onto its final name (in reserve order);
        # an exception inside it (or during the renames) removes what this run wrote,
        # restores replaced files and re-raises.

    ``tx.write`` of a path not reserved yet reserves it first. A writer is called with the
    temporary path and must create that file. Locks are held until the block ends.
    """

    force: bool = False
    hint: str = "use --force to overwrite"
    _inputs: list[Path] = field(default_factory=list)
    _outputs: list[_Output] = field(default_factory=list)
    _made_dirs: list[Path] = field(default_factory=list)
    _done: bool = False

    # -- checks and reservations

    def check_inputs(self, *inputs: PathLike | None) -> None:
        """Register the command's input files; an output naming the same file is refused."""
        for item in inputs:
            if item is None or not os.path.lexists(item):
                continue  # not a file (e.g. a stock spec name): nothing to clobber
            path = Path(item)
            for out in self._outputs:
                self._refuse_input(out.path, path)
            self._inputs.append(path)

    @staticmethod
    def _refuse_input(output: Path, source: Path) -> None:
        detail = _clobbers(output, source)
        if detail is not None:
            raise OutputConflictError(f"{output}: output would overwrite an input of this command{detail}; "
                                      f"choose another output name")

    def reserve(self, path: PathLike) -> Path:
        """Check ``path`` against the inputs, the other outputs and existing files; lock it."""
        if self._done:
            raise RuntimeError("this output transaction has already finished")
        _refuse_folder(path)
        target = Path(path)
        scope = _INPUTS.get()
        if scope is not None and not any(open_tx is self for open_tx in scope.transactions):
            scope.transactions.append(self)  # files the command reads from now on are checked too
        for source in [*self._inputs, *(scope.files if scope is not None else [])]:
            self._refuse_input(target, source)
        for other in self._outputs:
            if _same_file(target, other.path):
                same = "" if str(target) == str(other.path) else f" ({target} and {other.path} are one file)"
                raise OutputConflictError(f"{target}: named twice as an output of one command{same}; "
                                          f"give each output its own name")
        if os.path.exists(target) and not os.path.isfile(target):  # a device, a pipe, /dev/stdout
            raise OutputConflictError(f"{target}: is not a regular file; outputs are written as files")
        self._make_parent(target.parent)
        lock = FileLock(lock_path_for(target), str(target)).acquire()
        out = _Output(target, lock)
        self._outputs.append(out)
        if not self.force and os.path.lexists(target):
            raise OutputExistsError(target, self.hint)
        self._remove_stale_temporaries(target)
        return target

    def _make_parent(self, folder: Path) -> None:
        missing: list[Path] = []
        probe = folder
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._made_dirs.extend(missing)  # deepest first: removed in this order on rollback

    @staticmethod
    def _remove_stale_temporaries(target: Path) -> None:
        """Temporaries of this name left by a killed run (safe: we hold the name's lock)."""
        pattern = os.path.join(glob.escape(str(target.parent)), glob.escape(f".{target.name}.") + "*.tmp")
        for stale in glob.glob(pattern):
            try:
                os.unlink(stale)
            except OSError:
                pass

    def _entry(self, path: PathLike) -> _Output:
        target = Path(path)
        for out in self._outputs:
            if out.path == target:
                return out
        return self._entry(self.reserve(path))  # the name as given: 'newdir/' is refused, not made 'newdir'

    # -- writing

    def temporary(self, path: PathLike) -> Path:
        """Reserve ``path`` (if needed) and return the temporary to fill; sealed at commit."""
        out = self._entry(path)
        if out.tmp is not None:
            raise OutputConflictError(f"{out.path}: named twice as an output of one command; give each output its own name")
        out.tmp = out.path.with_name(f".{out.path.name}.{secrets.token_hex(4)}.tmp")
        return out.tmp

    def write(self, path: PathLike, data: str | bytes | Writer) -> Path:
        """Write ``data`` (text, bytes, or ``writer(tmp_path)``) to a fsynced temporary for ``path``."""
        tmp = self.temporary(path)
        out = self._entry(path)
        try:
            if callable(data):
                data(tmp)
            else:
                with open(tmp, "xb") as handle:
                    handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            self._seal(out)
        except OSError as exc:
            if exc.filename is None:  # e.g. ENOSPC from write(): name the file being written
                raise OSError(exc.errno, exc.strerror or str(exc), str(out.path)) from exc
            raise
        return out.path

    @staticmethod
    def _seal(out: _Output) -> None:
        """Usual permissions (not mkstemp's 0600) and the data on disk before any rename."""
        if out.sealed:
            return
        if out.tmp is None or not out.tmp.exists():
            raise RuntimeError(f"nothing was written for {out.path}")
        os.chmod(out.tmp, _new_file_mode(out.path))
        with open(out.tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        out.sealed = True

    # -- commit / rollback

    def commit(self) -> list[Path]:
        """Rename every temporary onto its final name; on failure undo and re-raise."""
        if self._done:
            return [out.path for out in self._outputs]
        try:
            for out in self._outputs:
                self._seal(out)
            for out in self._outputs:
                if os.path.lexists(out.path):
                    out.backup = out.path.with_name(f".{out.path.name}.{secrets.token_hex(4)}.old.tmp")
                    try:
                        os.link(out.path, out.backup, follow_symlinks=False)
                    except OSError:
                        out.backup = None  # no hard links here: the old file cannot be restored
            for out in self._outputs:
                os.replace(out.tmp, out.path)  # type: ignore[arg-type]
                out.renamed = True
            for folder in {out.path.parent for out in self._outputs}:
                _fsync_dir(folder)
        except BaseException:
            self.rollback()
            raise
        self._finish(keep_dirs=True)
        return [out.path for out in self._outputs]

    def rollback(self) -> None:
        """Remove what this transaction wrote and put back what it replaced."""
        if self._done:
            return
        for out in reversed(self._outputs):
            try:
                if out.renamed:
                    if out.backup is not None:
                        os.replace(out.backup, out.path)
                        out.backup = None
                    else:
                        os.unlink(out.path)
            except OSError:
                out.backup = None  # could not restore: keep the backup file rather than lose it
        self._finish(keep_dirs=False)

    def _finish(self, keep_dirs: bool) -> None:
        self._done = True
        scope = _INPUTS.get()
        if scope is not None:
            scope.transactions[:] = [open_tx for open_tx in scope.transactions if open_tx is not self]
        for out in self._outputs:
            for leftover in (out.tmp if not out.renamed else None, out.backup):
                if leftover is not None:
                    try:
                        os.unlink(leftover)
                    except OSError:
                        pass
            out.lock.release()
        if not keep_dirs:
            for folder in self._made_dirs:
                try:
                    folder.rmdir()
                except OSError:
                    pass

    def __enter__(self) -> "OutputTransaction":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()


# --------------------------------------------------------------------------- one-file helpers


@contextmanager
def atomic_path(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it is renamed onto ``path`` on success."""
    with OutputTransaction(force=overwrite) as tx:
        yield tx.temporary(path)


def atomic_write(path: PathLike, data: str | bytes, overwrite: bool = True) -> Path:
    """Write text or bytes to ``path`` atomically (locked temporary, fsync, rename)."""
    with OutputTransaction(force=overwrite) as tx:
        tx.write(path, data)
    return Path(path)


def atomic_write_with(path: PathLike, writer: Writer, overwrite: bool = True) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with OutputTransaction(force=overwrite) as tx:
        tx.write(path, writer)
    return Path(path)


# --------------------------------------------------------------------------- run folders


@dataclass
class RunDirClaim:
    """A training run folder locked for the lifetime of one run (see :func:`claim_run_dir`).

    ``had_run`` says whether the folder already held a run when it was claimed (True for
    a resume, or a ``force`` restart). Release with :meth:`release` or by leaving a
    ``with`` block; the kernel also drops the lock if the process dies.
    """

    path: Path
    had_run: bool
    lock: FileLock

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> "RunDirClaim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(path: PathLike, *, force: bool = False, resume: bool = False,
                  run_files: Iterable[str] | None = None) -> RunDirClaim:
    """Create (if needed) and exclusively lock a run folder for one training run.

    * Another process holding the folder -> :class:`OutputBusyError` at once (non-blocking
      ``flock`` on ``PATH/.slimspec-run.lock``), so two ``train -o runs/same`` never both run.
    * The folder already holds a run -> :class:`~slimspec.errors.OutputExistsError` unless
      ``force`` or ``resume``. "Holds a run" means: one of ``run_files`` exists in it, or,
      when ``run_files`` is None, the folder has any entry besides the lock file.
    * ``force`` (and not ``resume``) deletes the existing ``run_files`` (only those names,
      nothing else) so files of the old run cannot mix with the new one. It refuses with
      :class:`~slimspec.errors.OutputConflictError`, before deleting anything, when one of
      them is a file the command reads (:func:`note_input`, by real path and inode): a run
      restarted from ``RUN/best.safetensors`` would otherwise delete its own starting point.
    * ``resume`` never deletes anything; ``claim.had_run`` tells the caller whether there
      is a run to resume (the caller raises its own error if not).

    The lock is held until ``claim.release()`` (or the end of ``with claim_run_dir(...)``);
    a path that exists but is not a folder raises :class:`~slimspec.errors.OutputConflictError`.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputConflictError(f"{folder}: exists and is not a folder (a run folder was expected)")
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / RUN_LOCK_NAME, str(folder)).acquire()
    try:
        names = list(run_files) if run_files is not None else None
        if names is None:
            had_run = any(entry != RUN_LOCK_NAME for entry in os.listdir(folder))
        else:
            had_run = any(os.path.lexists(folder / name) for name in names)
        if had_run and not (force or resume):
            raise OutputExistsError(folder, "it already holds a run: use --resume to continue it or --force to "
                                            "start over")
        if had_run and force and not resume and names:
            victims = [folder / name for name in names if (folder / name).is_file() or (folder / name).is_symlink()]
            for source in noted_inputs():
                for victim in victims:
                    if _clobbers(victim, source) is not None:
                        same = "" if str(victim) == str(source) else f" ({victim})"
                        raise OutputConflictError(
                            f"{source}: an input of this command{same} is a file of the run in {folder} that "
                            f"--force would delete; copy it out of the run folder first, or train into another one")
            for victim in victims:
                victim.unlink()
    except BaseException:
        lock.release()
        raise
    return RunDirClaim(folder, had_run, lock)


# --------------------------------------------------------------------------- hashes


def sha256_bytes(data: bytes | str) -> str:
    """Hex sha256 of bytes (text is UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
