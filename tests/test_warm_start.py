"""hrseg.runtime.warm: a script that calls ``run_warm()`` runs in a process forked from a warm
interpreter and behaves as if it had run in its own: its arguments, working directory,
environment, output streams and exit status are its own; it imports hrseg afresh; torch
computes the same bits and honours the instruction set the script chooses; the caller's umask,
CPU affinity and niceness are its own; signals reach it;
a caller killed outright takes it along; and when warm start is off it runs in place."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from hrseg.runtime import warm

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="warm start needs fork and pidfd_open (Linux)")

SCRIPT = textwrap.dedent(
    """
    import sys
    hrseg_before = sorted(n for n in sys.modules if n == "hrseg" or n.startswith("hrseg."))
    if __name__ == "__main__":
        from hrseg.runtime.warm import run_warm

        run_warm()
    import json, os, signal, time
    mode = sys.argv[1]
    if mode == "report":
        print(json.dumps({
            "warm": os.environ.get("HRSEG_WARM_CHILD") == "1",
            "server": os.getppid(),
            "argv": sys.argv,
            "cwd": os.getcwd(),
            "probe": os.environ.get("PROBE"),
            "hrseg_before": hrseg_before,
            "stdout_is_pipe": not sys.stdout.isatty(),
            "umask": (lambda mask: (os.umask(mask), mask)[1])(os.umask(0)),
            "affinity": sorted(os.sched_getaffinity(0)),
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
        }))
        print("to stderr", file=sys.stderr)
        sys.exit(int(sys.argv[2]))
    if mode == "numerics":
        os.environ["ATEN_CPU_CAPABILITY"] = sys.argv[2]  # as pin_cpu_numerics does, before the first op
        import torch
        torch.manual_seed(0)
        torch.set_num_threads(2)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(2, 3, 24, 32)
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        digest = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().tobytes().hex()
        print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "weights": digest}))
    if mode == "sleep":
        print(os.getpid(), os.getppid(), flush=True)
        time.sleep(60)
    if mode == "raise":
        raise ValueError("boom from the script")
    """
)


@pytest.fixture(scope="module")
def folder():
    """A private folder of this module's own warm-start server (one cold start for all tests)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        path = Path(tempfile.mkdtemp(prefix="hw", dir="/tmp"))
        monkeypatch.setenv(warm.ENV_DIR, str(path / "d"))
        monkeypatch.setenv(warm.ENV_IDLE, "30")
        monkeypatch.delenv(warm.ENV_SWITCH, raising=False)
        monkeypatch.delenv(warm.ENV_CHILD, raising=False)
        (path / "script.py").write_text(SCRIPT)
        yield path
        warm.stop_servers()
    shutil.rmtree(path, ignore_errors=True)


def _run(folder: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, str(folder / "script.py"), *args], capture_output=True, text=True, env=environ, cwd=cwd or folder, timeout=180)


def _report(result: subprocess.CompletedProcess) -> dict:
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_script_runs_in_a_warm_child_as_if_in_its_own_process(folder, tmp_path):
    first = _run(folder, "report", "3", env={"PROBE": "one"}, cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    report = _report(first)
    assert report["warm"] is True
    assert report["argv"][1:] == ["report", "3"] and report["cwd"] == str(tmp_path) and report["probe"] == "one"
    assert report["hrseg_before"] == []  # the server's own hrseg modules are not handed down
    assert report["stdout_is_pipe"] and "to stderr" in first.stderr
    second = _report(_run(folder, "report", "0", env={"PROBE": "one"}))
    assert second["server"] == report["server"]  # the same warm server answered again


def test_the_callers_umask_affinity_and_niceness_apply_to_its_child(folder):
    cpu = min(os.sched_getaffinity(0))
    nice = os.getpriority(os.PRIO_PROCESS, 0) + 3

    def shell_settings() -> None:  # what `umask 027; nice -n 3 taskset -c <cpu> python ...` would set
        os.umask(0o027)
        os.nice(3)
        os.sched_setaffinity(0, {cpu})

    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(folder / "script.py"), "report", "0"], capture_output=True, text=True, env=environ, preexec_fn=shell_settings, timeout=180
    )
    report = _report(result)
    assert report["warm"] is True
    assert (report["umask"], report["affinity"], report["nice"]) == (0o027, [cpu], nice)


def test_per_invocation_variables_share_a_server_and_others_do_not():
    base = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "2"}
    key = warm.server_key(base)
    per_invocation = {"DVC_STAGE": "train_x", "PWD": "/elsewhere", "PYTEST_CURRENT_TEST": "t", "MLFLOW_TRACKING_URI": "sqlite:////x.db"}
    assert warm.server_key({**base, **per_invocation}) == key
    assert warm.server_key({**base, warm.ENV_IDLE: "5"}) != key  # read by the server itself
    assert warm.server_key({**base, "OMP_NUM_THREADS": "1"}) != key
    assert warm.server_key({**base, "PYTHONPATH": "/other"}) != key


def test_a_warm_child_computes_the_same_bits_and_takes_its_own_instruction_set(folder):
    results = {}
    for switch in ("1", "0"):
        for isa in ("default", "avx2"):
            result = _run(folder, "numerics", isa, env={warm.ENV_SWITCH: switch})
            assert result.returncode == 0, result.stderr
            results[switch, isa] = _report(result)
    assert results["1", "default"] == results["0", "default"]
    assert results["1", "default"]["capability"] == "DEFAULT"
    if results["0", "avx2"]["capability"] == "AVX2":  # a CPU with AVX2
        assert results["1", "avx2"] == results["0", "avx2"]


def test_an_exception_is_reported_as_in_its_own_process(folder):
    result = _run(folder, "raise")
    assert result.returncode == 1
    assert "ValueError: boom from the script" in result.stderr and "Traceback" in result.stderr


def test_a_prestarted_server_is_the_one_the_next_script_uses(folder, processes_started_for):
    """Light stages start the server without waiting (``warm.prestart``); a second prestart and
    a script that arrives while it is still preloading wait for that one instead of starting
    another."""
    from hrseg.runtime import background

    environ = {**os.environ, "PYTHONPATH": str(REPO), "PRESTART_PROBE": "1"}  # a server of its own
    path = background.socket_in(background.private_dir(warm.ENV_DIR), f"warm-{warm.server_key(environ)}.sock")
    subprocess.run([sys.executable, "-c", "from hrseg.runtime import warm; warm.prestart(); warm.prestart()"], env=environ, check=True, timeout=60)
    servers = processes_started_for(path)
    assert len(servers) == 1
    report = _report(_run(folder, "report", "0", env={"PRESTART_PROBE": "1"}))
    assert report["warm"] is True and report["server"] == servers[0]
    assert processes_started_for(path) == servers and not background.being_started(path)


def test_a_stale_starting_marker_does_not_stop_a_start(tmp_path):
    """A marker whose process died, or whose pid now belongs to another process, is ignored."""
    from hrseg.runtime import background

    path = tmp_path / "warm-x.sock"
    marker = path.with_name(path.name + ".starting")
    finished = subprocess.Popen(["true"])
    finished.wait()
    for content in (str(finished.pid), str(os.getpid()), "not a pid"):  # dead; alive but serving nothing; garbage
        marker.write_text(content)
        assert not background.being_started(path)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _start_sleeper(folder: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int, int]:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    caller = subprocess.Popen([sys.executable, str(folder / "script.py"), "sleep"], stdout=subprocess.PIPE, text=True, env=environ)
    child, server = (int(n) for n in caller.stdout.readline().split())
    assert child != caller.pid  # it runs in a forked child
    return caller, child, server


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_the_server_waits_without_spinning_while_a_child_outlives_its_idle_time(folder):
    caller, child, server = _start_sleeper(folder, env={warm.ENV_IDLE: "0.5"})  # a server of its own
    try:
        time.sleep(1.5)  # past the idle time, with a child still running
        before = _cpu_seconds(server)
        time.sleep(2.0)
        assert _cpu_seconds(server) - before < 0.5  # a busy loop would burn about 2 s here
    finally:
        caller.kill()
        caller.wait(timeout=30)
    assert _gone(child)


def test_signals_to_the_caller_reach_the_child_and_the_caller_dies_alike(folder):
    caller, child, _ = _start_sleeper(folder)
    caller.send_signal(signal.SIGTERM)
    assert caller.wait(timeout=30) == -signal.SIGTERM
    assert _gone(child)


def test_a_caller_killed_outright_takes_its_child_along(folder):
    caller, child, _ = _start_sleeper(folder)
    caller.kill()
    caller.wait(timeout=30)
    assert _gone(child)


def test_switched_off_the_script_runs_in_its_own_process(folder):
    result = _run(folder, "report", "0", env={warm.ENV_SWITCH: "0"})
    assert result.returncode == 0 and _report(result)["warm"] is False


def test_hrseg_torch_commands_start_warm_and_behave_the_same(folder, tmp_path):
    """``hrseg export`` (a command whose work imports torch) runs in a warm child: the same
    message and exit status as run in place; ``--help`` and the app tests invoke stay in place."""
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "hrseg.cli", "export", "-c", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "m.onnx")]
    warm_run = subprocess.run(command, capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=180)
    cold_run = subprocess.run(command, capture_output=True, text=True, env={**environ, warm.ENV_SWITCH: "0"}, cwd=tmp_path, timeout=180)
    assert warm_run.returncode == cold_run.returncode != 0
    assert warm_run.stderr == cold_run.stderr and "missing.pth" in warm_run.stderr
    log = (folder / "d" / "warm.log").read_text()
    assert f"runs {REPO / 'hrseg' / 'cli' / '__main__.py'}" in log
