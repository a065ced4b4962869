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
  sets resource limits, drops to a throw-away uid, and starts a thread that installs an
  audit hook and only then executes the program and the tests. When it exits, the kernel
  kills every process left in its PID namespace.

The verdict never comes from the exit code or from stdout: the harness writes a line
holding a secret nonce to a dedicated pipe, and only after every test ran without raising.

The sandbox side comes first in this file and the script entry point sits between the
two halves, so the sandboxed interpreter starts without importing the trainer's modules.
"""

from __future__ import annotations

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
SIGKILL = 9


def _launcher():
    """Read the job, enter namespaces, fork the harness, wait for it, exit with its status."""
    import ctypes

    job = marshal.loads(_read_all(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
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
    # The launcher enforces the wall clock itself: it kills the harness and reaps it, and
    # the reaping returns only once the kernel has emptied the harness's PID namespace.
    try:
        import select
        import time
        pidfd = os.pidfd_open(pid)
        if not select.select([pidfd], [], [], max(0.0, job["deadline"] - time.monotonic()))[0]:
            os.kill(pid, SIGKILL)
            os.write(job["report_fd"], f"{job['nonce']} timeout\n".encode())
    except OSError:  # no pidfd (Linux < 5.3): the trainer's own deadline still applies
        pass
    _, status = os.waitpid(pid, 0)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _read_all(fd):
    """Read a pipe to its end, unbuffered: no copy of the job lingers in an io buffer."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _harness(job, libc, flags):
    """Lock this process down, then run the program and the tests. Never returns."""
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
    os.write(job["report_fd"], f"{job['nonce']} isolation {marshal.dumps(info).hex()}\n".encode())
    # The program runs in a second thread, which alone holds the nonce and the pipe (popped
    # from the job, which this frame and the launcher's still hold). Python runs signal
    # handlers in the main thread only and lets only it install them, so no handler can be
    # handed a frame on the path to the nonce; and this thread blocks every signal, so it
    # never wakes to run Python again (a KeyboardInterrupt would run the launcher's
    # `finally`, whose globals the program can patch). The new thread unblocks them.
    import _signal
    import _thread
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    _thread.start_new_thread(_user_code_thread, tuple(job.pop(k) for k in ("program", "tests", "nonce", "report_fd")))
    wait = _thread.allocate_lock()
    wait.acquire()
    wait.acquire()  # forever: the program's thread ends the process


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
        # noexec: a binary or extension module the program writes (a copied _ctypes) cannot be loaded
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


def _user_code_thread(program, tests, nonce, fd):
    """The program's thread: it ends the process, whatever happens (the main thread never wakes)."""
    exit_now = os._exit  # bound before the program can patch os
    try:
        _run_user_code(program, tests, nonce, fd)
    finally:
        exit_now(70)  # only reached when the harness itself broke (a MemoryError compiling, a closed pipe)


def _run_user_code(program, tests, nonce, fd):
    """Compile, lock introspection, exec the program, exec the tests, report, exit.

    Runs in its own thread; the nonce lives only in this frame. The audit hook denies every
    way Python code has to reach another frame or arbitrary objects (sys._getframe,
    traceback/generator frames, gc, tracing, ctypes and other raw memory access) that it
    can deny; docs/sandbox.md names one it cannot (the launcher's cached _ctypes). Every
    function and class used after the program ran is bound to a local first: the program
    may patch builtins and modules (exec, dict, BaseException, os.write) without reaching
    this code.
    """
    import builtins

    import _signal

    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])  # blocked by the main thread, which started this one
    run, dict_, type_, str_, base_exception = exec, dict, type, str, BaseException
    write, exit_now = os.write, os._exit

    def report(status, detail=""):
        detail = str_.replace(detail[:1000], "\n", " ")
        write(fd, f"{nonce} {status} {detail}\n".encode())

    try:
        program_code = compile(program, "<program>", "exec")
        tests_code = compile(tests, "<tests>", "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        report("error", f"{type(exc).__name__}: {exc}")
        exit_now(0)
    clean_builtins = dict(vars(builtins))  # the tests get these, whatever the program patches
    hook, denied_module = _make_audit_hook()
    for name in list(sys.modules):  # ctypes and its submodules, loaded by the launcher: a re-import meets the hook
        if denied_module(name):
            del sys.modules[name]
    sys.addaudithook(hook)
    # Run as a module, not a script: a `__main__` block (input(), doctest.testmod()) does not
    # run, as in the HumanEval and MBPP reference harnesses. Registered, for dataclasses & co.
    module = sys.modules["program"] = type(sys)("program")
    namespace = vars(module)
    namespace["__builtins__"] = builtins
    try:
        run(program_code, namespace)
        run(tests_code, dict_(namespace, __builtins__=clean_builtins))
    except base_exception as exc:  # SystemExit and KeyboardInterrupt are failures too
        try:
            message = f"{type_(exc).__name__}: {exc}"
        except base_exception:  # a hostile __str__
            message = type_(exc).__name__
        report("failed", message)
    else:
        report("passed")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except base_exception:
            pass
    exit_now(0)  # also ends threads the program left running


def _make_audit_hook():
    """An audit hook that cannot be removed and whose state the program cannot reach.

    It is a closure over frozen constants with its builtins bound as defaults (no global
    lookup at call time), and no reference to it is kept where the program could find it.
    Returns it and its test for denied modules.
    """
    denied = frozenset({
        "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
        "sys.setprofile", "sys._settraceallthreads", "sys._setprofileallthreads",
        "sys.monitoring.register_callback", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "socket.__new__",
        # a forked child's thread is its main thread: it may install a signal handler, which is
        # handed a frame on the path to the nonce (subprocess's preexec_fn: _posixsubprocess, below)
        "os.fork", "os.forkpty"})
    frame_attributes = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
    memory_files = ("/mem", "/pagemap")

    # raw memory; a fork running Python code; subinterpreters (an audit hook binds one interpreter)
    names = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "_xxsubinterpreters",
                       "_xxinterpchannels", "_interpreters", "_interpchannels", "_interpqueues"})

    def denied_module(name, str_=str, names=names):
        # under any package too: a copied extension module keeps its name (its init is PyInit_<name>)
        last = str_.rpartition(name, ".")[2]
        return last in names or str_.startswith(last, "_test") or str_.startswith(name, "ctypes.")

    def hook(event, args, str_=str, bytes_=bytes, type_=type, error=PermissionError, value_error=ValueError,
             denied_module=denied_module):
        if event in denied:
            # ValueError is what "call stack is not deep enough" raises: namedtuple, typing,
            # enum and logging catch it, so they keep working without frames.
            raise (value_error if event == "sys._getframe" else error)(f"sandbox: {event} is disabled")
        if event == "object.__getattr__" and args[1] in frame_attributes:
            raise error(f"sandbox: {args[1]} is disabled")
        if event == "import" and denied_module(args[0]):
            raise error(f"sandbox: import of {args[0]} is disabled")
        if str_.startswith(event, "ctypes."):
            raise error(f"sandbox: {event} is disabled")
        if event == "open" and type_(args[0]) in (str_, bytes_):  # matters only outside the jail
            path = args[0] if type_(args[0]) is str_ else bytes_.decode(args[0], "utf-8", "replace")
            if str_.endswith(path, memory_files):
                raise error("sandbox: process memory files are disabled")
    return hook, denied_module


if __name__ == "__main__":
    _launcher()  # never returns: the trainer side below is not even imported


# ---------------------------------------------------------------------------------------
# Trainer side
# ---------------------------------------------------------------------------------------

import functools  # noqa: E402  (see the module docstring for why the imports sit here)
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
              use_namespaces: bool = True, tail: int = 2000) -> SandboxResult:
    """Run `program`, then `tests` in its namespace; passed iff the tests ran to the end.

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
    job = {"program": program, "tests": tests, "nonce": nonce, "report_fd": report_w, "uid": uid,
           "cpu_seconds": max(1, math.ceil(timeout)), "deadline": start + timeout,
           "limits": vars(limits), "namespaces": use_namespaces, "hide": _site_packages()}
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(report_w,), cwd=workdir, env=dict(_ENV), start_new_session=True)
        os.close(report_w)
        report_w = None
        try:
            proc.stdin.write(marshal.dumps(job))
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
    elif timed_out or code == 128 + signal.SIGXCPU:
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
    """Run `(program, tests)` pairs in parallel; results come back in the jobs' order.

    Each worker thread waits on one sandbox process, so `workers` bounds the programs
    running at once (default: one per CPU core). `kwargs` go to run_tests.
    """
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], **kwargs), jobs))


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

    The launcher writes the isolation line before any user code runs; the harness writes
    the verdict line. Lines without the nonce (the program may write to the pipe) are
    ignored, and so is any line after the first of each kind.
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
