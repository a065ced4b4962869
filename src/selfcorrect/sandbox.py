"""Run untrusted, model-written Python programs against unit tests.

`run_tests(program, tests)` runs `program` and then `tests` in a fresh interpreter and
returns a `SandboxResult`; `run_many(jobs)` runs many of them in parallel. The design,
its guarantees and the residual risks are written up in docs/sandbox.md.

Layers, from the outside in:

* the trainer (this module, imported) starts ``python -I -S -B sandbox.py`` in a new
  session with a scrubbed environment and sends the job on stdin; it enforces the wall
  clock, caps the output it reads, SIGKILLs the whole process group afterwards and
  deletes the temporary folder;
* the launcher (this file run as a script, still trusted code) moves into new PID,
  network, mount, IPC and UTS namespaces when the OS allows it and forks;
* the harness (the forked child: PID 1 of the new PID namespace) builds a read-only jail,
  sets resource limits, drops to a throw-away uid and forks the program's process, which
  runs the program and answers calls; the harness itself runs the tests, calling the
  program's functions across a pipe that carries plain data only. When it exits, the
  kernel kills every process left in its PID namespace.

The verdict never comes from the exit code or from stdout: the harness writes a line
holding a secret nonce to a dedicated pipe, and only after every test ran without raising.
The program's process never holds that pipe, and none of the program's code runs in the
harness (its answers arrive as data): the program cannot forge the verdict.

The sandbox side comes first in this file and the script entry point sits between the
two halves, so the sandboxed interpreter starts without importing the trainer's modules.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import json
import marshal
import os
import sys

# ---------------------------------------------------------------------------------------
# Sandbox side: runs in the sandboxed interpreter (python -I -S -B sandbox.py)
# ---------------------------------------------------------------------------------------

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
SIGKILL, SIGINT, SIG_IGN = 9, 2, 1
LAUNCHER_TIMEOUT = 124  # the launcher's exit code when it stopped the run at the deadline


def _launcher():
    """Read the job's first part, enter namespaces, fork the harness, wait for it, exit with
    its status (LAUNCHER_TIMEOUT when the launcher stopped it at the deadline)."""
    import ctypes

    # The tests and the nonce stay in the pipe, for the harness to read once the program's
    # process (a fork) exists: no copy of them is ever in the program's memory.
    job = marshal.loads(_read_frame(0))
    libc = ctypes.CDLL(None, use_errno=True)
    flags = 0
    if job["namespaces"]:
        # As root: PID + network + mount namespaces (mount for the jail). Otherwise try an
        # unprivileged user namespace, which still gives PID and network isolation.
        ns = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        for candidate in ((ns | CLONE_NEWNS,) if os.geteuid() == 0 else ()) + (ns | CLONE_NEWUSER,):
            if libc.unshare(candidate) == 0:
                flags = candidate
                break
    pid = os.fork()
    if pid == 0:
        try:
            _harness(job, libc, flags)
        finally:
            os._exit(70)  # only reached when the harness itself broke
    _stdin_from_devnull()
    # The launcher enforces the wall clock itself: it kills the harness and reaps it, and
    # the reaping returns only once the kernel has emptied the harness's PID namespace.
    try:
        import select
        import time
        pidfd = os.pidfd_open(pid)
        if not select.select([pidfd], [], [], max(0.0, job["deadline"] - time.monotonic()))[0]:
            os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
            os._exit(LAUNCHER_TIMEOUT)
    except OSError:  # no pidfd (Linux < 5.3): the trainer's own deadline still applies
        pass
    _, status = os.waitpid(pid, 0)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _read_frame(fd):
    """One length-prefixed part of the job, read unbuffered (nothing past it is consumed)."""
    return _read_exactly(fd, int.from_bytes(_read_exactly(fd, 8), "big"))


def _stdin_from_devnull():
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _harness(job, libc, flags):
    """Lock this process down, fork the program's process, run the tests. Never returns."""
    import resource

    limits, uid = job["limits"], job["uid"]
    jail = bool(flags & CLONE_NEWNS) and _build_jail(libc, limits["tmpfs_mb"], uid, job["hide"])
    # A throw-away uid needs a readable interpreter: the jail exposes it; without the jail,
    # an interpreter under a private home (mode 700) would break every later import.
    if uid is not None and not (jail or _world_readable(sys.prefix)):
        uid = None
    cpu = job["cpu_seconds"]
    rlimits = {"RLIMIT_CPU": (cpu, cpu + 1), "RLIMIT_AS": limits["memory_mb"] << 20,
               "RLIMIT_FSIZE": limits["file_size_mb"] << 20, "RLIMIT_CORE": 0,
               "RLIMIT_NOFILE": limits["open_files"]}
    if uid is not None:  # counted per uid: meaningful only for a uid of our own
        rlimits["RLIMIT_NPROC"] = limits["processes"]
    for name, value in rlimits.items():
        resource.setrlimit(getattr(resource, name), value if isinstance(value, tuple) else (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # drops every capability; also clears "dumpable" and the death signal
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no /proc/<pid>/mem, no ptrace by siblings
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid binaries cannot raise privileges
    libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)  # die with the launcher
    info = {"pid_namespace": bool(flags & CLONE_NEWPID), "net_namespace": bool(flags & CLONE_NEWNET),
            "user_namespace": bool(flags & CLONE_NEWUSER), "jail": jail, "uid": uid}
    # The program runs in a child process that never holds the verdict pipe, nor the tests or
    # the nonce (still unread in fd 0); this process runs the tests, calling the program's
    # functions across a pipe that carries plain data only. As PID 1 it only gets signals
    # it handles: Python's SIGINT handler is dropped, so the program cannot interrupt the tests.
    import _signal
    _signal.signal(SIGINT, SIG_IGN)
    getattr(sys, "set_int_max_str_digits", lambda limit: None)(0)  # big integers are data too
    requests, replies = os.pipe(), os.pipe()
    if os.fork() == 0:
        _stdin_from_devnull()
        _signal.signal(SIGINT, _signal.default_int_handler)
        for fd in (job["report_fd"], requests[1], replies[0]):
            os.close(fd)
        _serve_program(job["program"], requests[0], replies[1])
    os.close(requests[0])
    os.close(replies[1])
    secret = marshal.loads(_read_frame(0))
    _stdin_from_devnull()
    os.write(job["report_fd"], f"{secret['nonce']} isolation {marshal.dumps(info).hex()}\n".encode())
    _run_tests(secret["tests"], secret["nonce"], job["report_fd"], _Program(requests[1], replies[0]),
               secret["entry_point"])


def _build_jail(libc, tmpfs_mb, uid, hide):
    """Chroot into a fresh tmpfs holding read-only binds of the system and the interpreter.

    The program sees /usr, /lib*, /bin, /sbin, the Python installation without its
    site-packages (`hide`: the standard library only, so no numpy to read raw memory with),
    four /dev nodes, and a writable /tmp and /work (its cwd) on the size-limited tmpfs. It
    does not see /etc, /home, /root, /proc, the trainer's files or its temporary folder.
    The tmpfs vanishes with the mount namespace. Returns False (and stays outside) on failure.
    """
    import ctypes

    def mount(src, target, fstype, flags, data=None):
        if libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()) != 0:
            raise OSError(ctypes.get_errno(), f"mount {src} on {target}")

    root = os.getcwd()  # the trainer's fresh temporary folder becomes the mount point
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
        # noexec: a binary or extension module the program writes cannot be run or loaded
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={tmpfs_mb}m,nr_inodes=4096,mode=755")
        system = ["/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin"]
        python = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                        os.path.dirname(sys.executable))})
        for path in system + [p for p in python if not _inside(p, system + python)]:
            target = root + path
            if os.path.islink(path):  # merged /usr: /bin -> usr/bin
                os.symlink(os.readlink(path), target)
            elif os.path.isdir(path):
                os.makedirs(target)
                mount(path, target, None, MS_BIND | MS_REC)
                mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        for path in hide:
            if os.path.isdir(root + path):
                mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
        os.mkdir(root + "/dev")
        for node in ("null", "zero", "random", "urandom"):
            open(f"{root}/dev/{node}", "w").close()
            mount(f"/dev/{node}", f"{root}/dev/{node}", None, MS_BIND)
        os.makedirs(root + "/tmp", exist_ok=True)  # exists already when the interpreter lives below /tmp (a venv)
        os.chmod(root + "/tmp", 0o1777)
        os.mkdir(root + "/work", 0o700)
        if uid is not None:
            os.chown(root + "/work", uid, uid)
        os.chroot(root)
        os.chdir("/work")
        return True
    except OSError:
        return False


def _inside(path, dirs):
    """True when `path` lies below another directory of `dirs` (and is visible already)."""
    return any(path.startswith(d + "/") for d in dirs)


def _world_readable(path):
    """True when every directory from / to `path` lets other users through (mode o+x)."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


# ---- the program's process: runs it, then answers calls ----------------------------------

_MAX_MESSAGE = 64 << 20  # bytes: a reply past this is a failure, not a memory bomb in the tests' process


# (functions bound as defaults: the program may patch os and json in its process and still be answered)
def _frame(message, dumps=json.dumps):
    data = dumps(message).encode()
    return len(data).to_bytes(8, "big") + data


def _send_frame(fd, data, write=os.write):
    while data:
        data = data[write(fd, data):]


def _send(fd, message):
    _send_frame(fd, _frame(message))


def _receive(fd, loads=json.loads):
    """The next message, or None when the other side has gone."""
    head = _read_exactly(fd, 8)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > _MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes")
    body = _read_exactly(fd, size)
    return None if body is None else loads(body)


def _read_exactly(fd, size, read=os.read):
    chunks, left = [], size
    while left:
        chunk = read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _encode(value, handles, depth=0):
    """Plain data as JSON, an instance of a subclass (Counter, a namedtuple) as its built-in
    base's data, so that no method of the program's ever judges a comparison; anything
    else through `handles` (a handle on the program's side)."""
    if depth > 100:
        raise ValueError("data nested more than 100 deep")
    deeper = lambda items: [_encode(v, handles, depth + 1) for v in items]
    for base, convert in ((bool, bool), (int, int), (float, float), (str, str), (list, deeper)):
        if isinstance(value, base):
            return convert(value) if base is not list else deeper(list.__iter__(value))
    if value is None:
        return None
    fields = getattr(type(value), "_fields", None)
    if isinstance(value, tuple) and type(fields) is tuple and all(type(f) is str for f in fields):
        return {"$nt": [str(type(value).__name__), list(fields), deeper(tuple.__iter__(value))]}  # a namedtuple
    for base, tag in ((tuple, "$t"), (set, "$s"), (frozenset, "$fs")):
        if isinstance(value, base):
            return {tag: deeper(base.__iter__(value))}
    if isinstance(value, dict):
        return {"$d": [deeper(pair) for pair in dict.items(value)]}
    if isinstance(value, (bytes, bytearray)):
        return {"$b" if isinstance(value, bytes) else "$ba": bytes(value).hex()}
    if isinstance(value, complex):
        return {"$c": [value.real, value.imag]}
    names, parts, _ = _value_types()
    if type(value) in names:  # library values compared by value (the tests' side builds its own)
        return {"$v": [names[type(value)], _encode(parts[type(value)](value), handles, depth + 1)]}
    return handles(value)


@functools.lru_cache(maxsize=None)  # imported on first need: most runs never return one
def _value_types():
    """Library types whose values tests compare, with how each is taken apart and rebuilt
    (by name from this fixed table only: the program cannot choose what gets rebuilt)."""
    import collections
    import decimal
    import fractions
    table = {
        "fraction": (fractions.Fraction, lambda v: (v.numerator, v.denominator), lambda p: fractions.Fraction(*p)),
        "decimal": (decimal.Decimal, str, decimal.Decimal),
        "deque": (collections.deque, lambda v: (list(v), v.maxlen), lambda p: collections.deque(*p)),
        "keys": (type({}.keys()), set, set), "items": (type({}.items()), set, set),
    }
    return ({kind: name for name, (kind, _, _) in table.items()}, {kind: part for kind, part, _ in table.values()},
            {name: build for name, (_, _, build) in table.items()})


def _decode(data, handle, depth=0):
    if depth > 100:
        raise ValueError("data nested more than 100 deep")
    if type(data) is list:
        return [_decode(v, handle, depth + 1) for v in data]
    if type(data) is not dict:
        return data
    (tag, body), = data.items()
    items = [_decode(v, handle, depth + 1) for v in body] if tag in ("$t", "$s", "$fs", "$d") else None
    kinds = {"$t": tuple, "$s": set, "$fs": frozenset, "$d": lambda pairs: {k: v for k, v in pairs}}
    if tag in kinds:
        return kinds[tag](items)
    if tag in ("$b", "$ba"):
        return (bytes if tag == "$b" else bytearray).fromhex(body)
    if tag == "$v":
        return _value_types()[2][body[0]](_decode(body[1], handle, depth + 1))
    if tag == "$c":
        return complex(*body)
    if tag == "$nt":
        name, fields, values = body
        return _namedtuple(name, tuple(fields))(*[_decode(v, handle, depth + 1) for v in values])
    return handle(tag, body)


@functools.lru_cache(maxsize=256)
def _namedtuple(name, fields):
    import collections
    return collections.namedtuple(name, fields)


def _serve_program(program, requests, replies):
    """Run the program, send its top-level names, then answer calls until the tests' side
    closes the pipe. Nothing sent back is trusted beyond being data. Never returns."""
    exit_now = os._exit
    objects = []

    def handle(value):
        if type(value) is type(sys):
            return {"$m": value.__name__}
        objects.append(value)
        return {"$h": [len(objects) - 1, type(value).__name__, None]}

    def resolve(tag, body):
        if tag != "$h":
            raise ValueError(f"unknown tag {tag}")
        return objects[body[0]] if body[0] is not None else _library_object(body[2])

    def answer(work):
        try:
            reply = _frame({"value": _encode(work(), handle)})
            sys.stdout.flush()  # the process is killed, not ended, when the tests are done
        except BaseException as exc:  # SystemExit too: it is the program's answer
            try:
                reply = _frame({"raise": type(exc).__name__, "message": str(exc)[:1000]})
            except BaseException:  # a hostile __str__
                reply = _frame({"raise": type(exc).__name__, "message": ""})
        _send_frame(replies, reply)

    try:
        sys.addaudithook(_audit_hook)
        # Run as a module, not a script: a `__main__` block (input(), doctest.testmod()) does
        # not run, as in the HumanEval and MBPP reference harnesses. Registered, for dataclasses.
        module = sys.modules["program"] = type(sys)("program")
        namespace = vars(module)
        namespace["__builtins__"] = builtins
        try:
            code = compile(program, "<program>", "exec")
        except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
            _send(replies, {"error": f"{type(exc).__name__}: {exc}"})
            exit_now(0)

        def names():
            exec(code, namespace)
            return {k: v for k, v in namespace.items() if not k.startswith("__")}
        answer(names)
        ops = {"call": lambda target, r: target(*_decode(r["args"], resolve), **_decode(r["kwargs"], resolve)),
               "getattr": lambda target, r: getattr(target, r["name"]),
               "setattr": lambda target, r: setattr(target, r["name"], _decode(r["value"], resolve)),
               "getitem": lambda target, r: target[_decode(r["key"], resolve)],
               "iter": lambda target, r: iter(target), "next": lambda target, r: next(target),
               "bool": lambda target, r: bool(target), "len": lambda target, r: len(target)}
        while (request := _receive(requests)) is not None:
            answer(lambda: ops[request["op"]](objects[request["handle"]], request))
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        exit_now(0)


# ---- the tests' process: runs the tests against the program's answers ------------------

class ProgramError(Exception):
    """An exception the program raised that is not a built-in one (or its process ended)."""


class _NoProgram(Exception):
    """The program does not compile."""


class _Program:
    """The tests' end of the pipe to the program's process."""

    def __init__(self, requests, replies):
        self.requests, self.replies = requests, replies

    def names(self):
        """The program's top-level names (raises _NoProgram when it does not compile)."""
        reply = _receive(self.replies)
        if reply is not None and "error" in reply:
            raise _NoProgram(str(reply["error"]))
        return self._value(reply)

    def ask(self, op, handle, **fields):
        _send(self.requests, {"op": op, "handle": handle, **fields})
        return self._value(_receive(self.replies), op)

    def _value(self, reply, op=None):
        if reply is None:
            raise ProgramError("the program's process ended")
        if "raise" in reply:
            kind = getattr(builtins, reply["raise"], None)
            # StopIteration only ends an iteration: raised by a call, it would end the tests'
            # own loops early (all(map(check, cases)) on an empty map)
            if not (isinstance(kind, type) and issubclass(kind, Exception)) or (
                    issubclass(kind, StopIteration) and op != "next"):
                kind = ProgramError
            raise kind(f"{reply['raise']}: {reply['message']}" if kind is ProgramError else reply["message"])
        return _decode(reply["value"], self.remote)

    def remote(self, tag, body):
        """A handle as a `_Remote`; a module as this process's own import (clean, whatever the
        program patched on its side). Nothing else the program names is looked up here: a
        library object it claims to return could be any (`unittest.mock.ANY`)."""
        if tag == "$m":
            return importlib.import_module(body)
        if tag != "$h":
            raise ValueError(f"unknown tag {tag}")
        index, kind, _ = body
        return _Remote(self, index, kind)


def _library_object(ref):
    """A module's function or class by (module, qualified name), from this process's import."""
    value = importlib.import_module(ref[0])
    for part in ref[1].split("."):
        value = getattr(value, part)
    return value


class _Remote:
    """An object of the program's process. It may be called, iterated, indexed, measured,
    asked its truth and for or to set an attribute (the answers come back as data); it
    cannot be compared or searched (`==`, `in` without iterating), since then the program
    would judge its own answer (an "always equal" object)."""

    def __init__(self, program, handle, kind):
        object.__setattr__(self, "_remote", (program, handle, kind))

    def __call__(self, *args, **kwargs):
        program, handle, _ = self._remote
        return program.ask("call", handle, args=_encode(args, _not_data), kwargs=_encode(kwargs, _not_data))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        program, handle, _ = self._remote
        return program.ask("getattr", handle, name=name)

    def __setattr__(self, name, value):
        program, handle, _ = self._remote
        program.ask("setattr", handle, name=name, value=_encode(value, _not_data))

    def __getitem__(self, key):
        program, handle, _ = self._remote
        return program.ask("getitem", handle, key=_encode(key, _not_data))

    def __len__(self):
        program, handle, _ = self._remote
        return program.ask("len", handle)

    def __iter__(self):
        program, handle, _ = self._remote
        return program.ask("iter", handle)

    def __next__(self):
        program, handle, _ = self._remote
        try:
            return program.ask("next", handle)
        except StopIteration:
            raise StopIteration from None

    def __bool__(self):
        program, handle, _ = self._remote
        return program.ask("bool", handle)

    def __repr__(self):
        return f"<{self._remote[2]} from the program>"


def _not_data(value):
    """A handle for the program's own objects and for library functions and classes (`int`,
    `math.sqrt`: the program's process imports its own); nothing else crosses."""
    if type(value) is _Remote:
        return {"$h": [value._remote[1], value._remote[2], None]}
    ref = [getattr(value, "__module__", None), getattr(value, "__qualname__", None)]
    if all(type(part) is str for part in ref) and ref[0] != "tests":
        try:
            if _library_object(ref) is value:
                return {"$h": [None, type(value).__name__, ref]}
        except (ImportError, AttributeError):
            pass
    raise TypeError(f"a {type(value).__name__} cannot be passed to the program (plain data only)")


def _run_tests(tests, nonce, fd, program, entry_point):
    """Run the tests with the program's names bound to its answers (none that shadows a
    builtin but the entry point); report; exit."""
    def report(status, detail=""):
        detail = detail[:1000].replace("\n", " ")
        os.write(fd, f"{nonce} {status} {detail}\n".encode(errors="backslashreplace"))

    try:
        tests_code = compile(tests, "<tests>", "exec")
    except (SyntaxError, ValueError) as exc:
        report("error", f"{type(exc).__name__}: {exc}")
        os._exit(0)
    try:
        names = {k: v for k, v in program.names().items()
                 if type(k) is str and not k.startswith("__") and (k == entry_point or not hasattr(builtins, k))}
        exec(tests_code, {**names, "__name__": "tests", "__builtins__": builtins})
    except _NoProgram as exc:
        report("error", str(exc))
    except BaseException as exc:
        report("failed", f"{type(exc).__name__}: {exc}")
    else:
        report("passed")
    os._exit(0)


def _audit_hook(event, args, str_=str, bytes_=bytes, type_=type, error=PermissionError):
    """In the program's process: no sockets, no other process's memory files. Both matter only
    where namespaces are missing (no network namespace, /proc visible), and a child process
    gets around them; the verdict does not rely on them (the program never holds it)."""
    if event == "socket.__new__":
        raise error("sandbox: sockets are disabled")
    if event == "open" and type_(args[0]) in (str_, bytes_):
        path = args[0] if type_(args[0]) is str_ else bytes_.decode(args[0], "utf-8", "replace")
        if str_.endswith(path, ("/mem", "/pagemap")):
            raise error("sandbox: process memory files are disabled")


if __name__ == "__main__":
    _launcher()  # never returns: the trainer side below is not even imported


# ---------------------------------------------------------------------------------------
# Trainer side
# ---------------------------------------------------------------------------------------

import math  # noqa: E402
import secrets  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

STATUSES = ("passed", "failed", "timeout", "error")

# The sandboxed interpreter sees only these variables (no HOME, no secrets, no proxies).
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_UID_BASE = 1_000_000  # throw-away uids are drawn above this, far from real accounts
_GRACE = 1.0  # seconds the trainer waits past the timeout before it kills the launcher


@dataclass(frozen=True)
class Limits:
    """Per-program resource limits."""
    memory_mb: int = 1024        # RLIMIT_AS, address space of each process
    processes: int = 16          # RLIMIT_NPROC: processes + threads of the throw-away uid
    file_size_mb: int = 16       # RLIMIT_FSIZE: largest file the program may write
    open_files: int = 64         # RLIMIT_NOFILE
    tmpfs_mb: int = 64           # size of the jail's writable tmpfs (/tmp and /work)
    output_bytes: int = 1 << 20  # stdout / stderr bytes read before the pipe is closed


@dataclass
class SandboxResult:
    status: str                   # one of STATUSES
    duration: float               # wall seconds, process start to cleanup
    detail: str = ""              # why it did not pass (exception type and message)
    stdout: str = ""              # tail of the program's stdout
    stderr: str = ""              # tail of the program's stderr
    exit_code: int | None = None  # the launcher's exit code; -N when killed by signal N
    isolation: dict = field(default_factory=dict)  # what the sandbox managed to set up

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_tests(program: str, tests: str, timeout: float = 3.0, limits: Limits = Limits(),
              use_namespaces: bool = True, tail: int = 2000, entry_point: str | None = None) -> SandboxResult:
    """Run `program`, then `tests` on its names; passed iff the tests ran to the end.

    The tests see the program's top-level names, except those that shadow a builtin
    (a program's `abs = lambda x: 0` would make `abs(f(x) - y) < 1e-9` vacuous), unless the
    name is `entry_point`, the function under test (MBPP/126's is named `sum`).

    Statuses: "passed"; "failed" (an exception, a failed assert, an early exit, a crash or
    a resource limit); "timeout" (wall clock or CPU seconds ran out); "error" (the program
    or the tests do not compile, the tests are empty, or the sandbox could not start).
    `timeout` bounds the wall clock of the whole run, interpreter start included, and the
    CPU seconds. `use_namespaces=False` skips namespaces and jail: the fallback of a
    machine without them, here so that tests can exercise it.
    """
    start = time.monotonic()
    if not tests.strip():
        return SandboxResult("error", 0.0, detail="no tests")
    nonce = secrets.token_hex(16)
    uid = _UID_BASE + secrets.randbelow(1 << 30) if os.geteuid() == 0 else None
    workdir = tempfile.mkdtemp(prefix="sandbox-")
    if uid is not None:
        os.chown(workdir, uid, uid)
    report_r, report_w = os.pipe()
    job = {"program": program, "report_fd": report_w, "uid": uid,
           "cpu_seconds": max(1, math.ceil(timeout)), "deadline": start + timeout,
           "limits": vars(limits), "namespaces": use_namespaces, "hide": _site_packages()}
    secret = {"tests": tests, "nonce": nonce, "entry_point": entry_point}  # read by the harness alone
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(report_w,), cwd=workdir, env=dict(_ENV), start_new_session=True)
        os.close(report_w)
        report_w = None
        try:
            proc.stdin.write(b"".join(len(part).to_bytes(8, "big") + part
                                      for part in (marshal.dumps(job), marshal.dumps(secret))))
            proc.stdin.close()
        except BrokenPipeError:  # the launcher died at once; its exit code tells why
            pass
        # The launcher stops the program at `timeout`; this later deadline is a backstop.
        outputs, timed_out = _collect(proc, report_r, start + timeout + _GRACE, limits.output_bytes)
    finally:
        if report_w is not None:
            os.close(report_w)
        os.close(report_r)
        if proc is not None:
            _kill_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    info, verdict, detail = _parse_report(outputs["report"], nonce)
    if info.get("uid") is not None and not info["pid_namespace"]:
        _kill_uid(info["uid"])  # no PID namespace: hunt down setsid'd descendants by uid
    code = proc.returncode
    if verdict == "passed":
        status = "passed"  # the tests completed; whatever the process did afterwards
    elif timed_out or code in (128 + signal.SIGXCPU, LAUNCHER_TIMEOUT):
        status = "timeout"
    elif verdict in STATUSES:
        status = verdict
    elif not info:  # the harness never started: a sandbox failure, not the program's
        status, detail = "error", _tail(outputs["stderr"], tail)
    else:
        status = "failed"
    return SandboxResult(
        status=status, duration=time.monotonic() - start, detail=detail,
        stdout=_tail(outputs["stdout"], tail), stderr=_tail(outputs["stderr"], tail),
        exit_code=code if code < 128 else -(code - 128), isolation=info)


def run_many(jobs, workers: int | None = None, **kwargs) -> list[SandboxResult]:
    """Run `(program, tests)` pairs, or `(program, tests, entry_point)` triples, in parallel;
    results come back in the jobs' order.

    Each worker thread waits on one sandbox process, so `workers` bounds the programs
    running at once (default: one per CPU core). `kwargs` go to run_tests.
    """
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], entry_point=job[2] if len(job) > 2 else None,
                                                   **kwargs), jobs))


@functools.cache
def _site_packages():
    """Third-party package folders of this interpreter (and of the base one under a venv)."""
    return sorted({os.path.realpath(sysconfig.get_paths(vars={"base": p, "platbase": p})[kind])
                   for p in (sys.prefix, sys.base_prefix) for kind in ("purelib", "platlib")})


def _collect(proc, report_fd, deadline, cap):
    """Read stdout, stderr and the report pipe until the launcher exits or time runs out.

    Each stream keeps at most `cap` bytes; past that its pipe is closed, so a program
    flooding it gets EPIPE instead of being drained forever.
    Returns ({"stdout" | "stderr" | "report": bytes}, timed_out).
    """
    streams = {proc.stdout.fileno(): ("stdout", proc.stdout), proc.stderr.fileno(): ("stderr", proc.stderr),
               report_fd: ("report", None)}
    data = {fd: bytearray() for fd in streams}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    timed_out, exited = False, False
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        # After the launcher exited, only drain what is already buffered: a descendant
        # that escaped the process group may hold the pipes open forever.
        events = sel.select(0 if exited else min(remaining, 0.1))
        if not events:
            if exited:
                break
            exited = proc.poll() is not None
            continue
        for key, _ in events:
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            buf = data[key.fd]
            buf += chunk[:cap - len(buf)]
            if not chunk or len(buf) >= cap:
                sel.unregister(key.fd)
                stream = streams[key.fd][1]
                if stream is not None:  # further writes by the program now fail with EPIPE
                    stream.close()
    sel.close()
    return {streams[fd][0]: bytes(buf) for fd, buf in data.items()}, timed_out


def _kill_group(proc):
    """SIGKILL the launcher's process group (the launcher, and without a PID namespace the
    descendants that stayed in the group), reap the launcher, close its pipes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def _kill_uid(uid):
    """SIGKILL every process owned by the throw-away `uid`; repeat while forks race us."""
    for _ in range(50):
        found = False
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                    os.kill(int(name), signal.SIGKILL)
                    found = True
            except OSError:  # gone meanwhile
                pass
        if not found:
            return


def _parse_report(raw, nonce):
    """(isolation info, verdict, detail) from the lines that carry the nonce.

    The harness writes the isolation line, then the verdict line; the program's process
    never holds the pipe. Lines without the nonce are ignored, and so is any line after
    the first of each kind.
    """
    info, verdict, detail = {}, None, ""
    for line in raw.decode("utf-8", "replace").splitlines():
        key, _, rest = line.partition(" ")
        if key != nonce:
            continue
        kind, _, rest = rest.partition(" ")
        if kind == "isolation" and not info:
            info = marshal.loads(bytes.fromhex(rest))
        elif kind in STATUSES and verdict is None:
            verdict, detail = kind, rest
    return info, verdict, detail


def _tail(raw, n):
    return raw[-n:].decode("utf-8", "replace") if n else ""
