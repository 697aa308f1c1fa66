"""The SLURM job-array script: rendering, the `simcons slurm` command, and a real one-node SLURM.

The real-SLURM tests start munged, slurmctld and slurmd as root in a temporary folder; they skip
(with the reason) where the slurm-wlm package is missing, the user is not root, or the daemons
do not come up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from simcons.slurm import (
    SlurmError,
    SlurmOptions,
    render_script,
    slurm_command,
    submit,
    time_limit_seconds,
    write_script,
)

PG_URL = "postgresql+psycopg://simcons:s3cr3t@db.example.org:5432/simcons"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel")
RECORDED_ENV = (
    "SIMCONS_DB",
    "SIMCONS_HOME",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_JOB_ID",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)


def sbatch_options(script: str) -> dict[str, list[str]]:
    """The script's #SBATCH options: name -> values, in order."""
    found: dict[str, list[str]] = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            name, _, value = line.removeprefix("#SBATCH ").partition("=")
            found.setdefault(name, []).append(value)
    return found


def full_options(tmp_path: Path) -> SlurmOptions:
    """Options with every field away from its default."""
    return SlurmOptions(
        tasks=16,
        log_dir=tmp_path / "logs",
        job_name="simsweep",
        partition="gpu",
        account="vision",
        qos="high",
        time="1-12:00:00",
        gpus_per_task=2,
        cpus_per_task=12,
        mem="64G",
        constraint="a100|h100",
        extra_sbatch=("--exclude=node3", "#SBATCH --mail-type=END"),
        signal_seconds=300,
        max_parallel=4,
        setup=("module load cuda/12.1", "source /shared/venv/bin/activate"),
        worker_args=("--kinds", "extract,similarity", "--lease", "600"),
    )


def test_every_option_becomes_an_sbatch_line(tmp_path: Path) -> None:
    script = render_script(
        full_options(tmp_path), db_url=PG_URL, home=Path("/shared/h"), python="/opt/py"
    )
    logs = tmp_path / "logs"
    assert script.startswith("#!/bin/bash\n")
    assert sbatch_options(script) == {
        "--job-name": ["simsweep"],
        "--array": ["0-15%4"],
        "--time": ["1-12:00:00"],
        "--ntasks": ["1"],
        "--cpus-per-task": ["12"],
        "--mem": ["64G"],
        "--gres": ["gpu:2"],
        "--partition": ["gpu"],
        "--account": ["vision"],
        "--qos": ["high"],
        "--constraint": ["a100|h100"],
        "--output": [f"{logs}/%x-%A_%a.out"],
        "--error": [f"{logs}/%x-%A_%a.err"],
        "--signal": ["B:TERM@300"],
        "--exclude": ["node3"],
        "--mail-type": ["END"],
    }
    body = script.splitlines()
    assert "set -euo pipefail" in body
    assert "export HF_HUB_OFFLINE=1" in body and "export TRANSFORMERS_OFFLINE=1" in body
    setup_at = body.index("module load cuda/12.1")
    assert body[setup_at - 1 : setup_at + 3] == [
        "set +u", "module load cuda/12.1", "source /shared/venv/bin/activate", "set -u"
    ]
    assert body[-1] == (
        "exec /opt/py -m simcons worker --device auto --kinds extract,similarity --lease 600"
    )


def test_defaults_cpu_only_and_no_signal(tmp_path: Path) -> None:
    options = SlurmOptions(
        tasks=1, log_dir=tmp_path, gpus_per_task=0, signal_seconds=0, offline=False
    )
    script = render_script(options, db_url=PG_URL, home=tmp_path, python="python3")
    found = sbatch_options(script)
    assert found["--array"] == ["0-0"] and found["--time"] == ["04:00:00"]
    assert found["--job-name"] == ["simcons"] and found["--cpus-per-task"] == ["8"]
    assert found["--mem"] == ["32G"]
    for absent in ("--gres", "--partition", "--account", "--qos", "--constraint", "--signal"):
        assert absent not in found
    assert "OFFLINE" not in script and "set +u" not in script


def test_bash_accepts_the_script(tmp_path: Path) -> None:
    path = tmp_path / "job.sbatch"
    awkward = "postgresql://u:p'a\"s$s w`d@h/db"
    write_script(path, render_script(full_options(tmp_path), db_url=awkward, home=tmp_path))
    checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_script_runs_the_worker_with_the_environment(tmp_path: Path) -> None:
    """Without SLURM: bash runs the script, exec-ing the stand-in Python with the exports."""
    out = tmp_path / "out"
    out.mkdir()
    awkward = "postgresql://u:p'a\"s$s w`d@h/db"
    options = SlurmOptions(tasks=1, log_dir=tmp_path, worker_args=("--max-jobs", "5"))
    script = render_script(options, db_url=awkward, home=tmp_path / "h o", python=stand_in(out))
    path = tmp_path / "job.sbatch"
    write_script(path, script)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "7", "SIMCONS_DB": "sqlite:///wrong.db"}
    subprocess.run(["bash", str(path)], env=env, check=True, capture_output=True)
    record = json.loads((out / "task-7.json").read_text())
    assert record["argv"] == ["-m", "simcons", "worker", "--device", "auto", "--max-jobs", "5"]
    assert record["env"]["SIMCONS_DB"] == awkward
    assert record["env"]["SIMCONS_HOME"] == str(tmp_path / "h o")
    assert record["env"]["HF_HUB_OFFLINE"] == "1"


def test_dry_run_masks_the_password_and_the_file_keeps_it(tmp_path: Path) -> None:
    runner = CliRunner()
    env = SimpleNamespace(url=PG_URL, home=tmp_path)
    dry = runner.invoke(slurm_command, ["--tasks", "2", "--dry-run"], obj=env)
    assert dry.exit_code == 0, dry.output
    assert "s3cr3t" not in dry.output
    masked = "'postgresql+psycopg://simcons:***@db.example.org:5432/simcons'"
    assert f"export SIMCONS_DB={masked}" in dry.output.splitlines()
    assert not (tmp_path / "simcons-workers.sbatch").exists()

    wrote = runner.invoke(slurm_command, ["--tasks", "2"], obj=env)
    assert wrote.exit_code == 0, wrote.output
    path = tmp_path / "simcons-workers.sbatch"
    assert f"sbatch {path}" in wrote.output
    assert f"export SIMCONS_DB={PG_URL}" in path.read_text().splitlines()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "slurm-logs").is_dir()
    assert sbatch_options(path.read_text())["--output"] == [
        f"{tmp_path / 'slurm-logs'}/%x-%A_%a.out"
    ]


def test_password_needing_quotes_is_quoted_in_the_file(tmp_path: Path) -> None:
    url = "postgresql://simcons:pa ss;rm@db/simcons"
    path = tmp_path / "job.sbatch"
    write_script(path, render_script(SlurmOptions(tasks=1, log_dir=tmp_path), db_url=url,
                                     home=tmp_path))
    assert f"export SIMCONS_DB='{url}'" in path.read_text().splitlines()


def test_cli_options_reach_the_script(tmp_path: Path) -> None:
    out = tmp_path / "w.sbatch"
    args = [
        "--tasks", "3", "--partition", "gpu", "--gpus", "0", "--cpus", "2", "--mem", "4G",
        "--time", "30", "--max-parallel", "2", "--setup", "module load x", "--sbatch-option",
        "--exclude=n1", "--worker-arg", "--kinds=probe", "--out", str(out), "--python", "/py",
    ]
    result = CliRunner().invoke(slurm_command, args, obj=SimpleNamespace(url=PG_URL, home=tmp_path))
    assert result.exit_code == 0, result.output
    script = out.read_text()
    found = sbatch_options(script)
    assert found["--array"] == ["0-2%2"] and found["--partition"] == ["gpu"]
    assert found["--cpus-per-task"] == ["2"] and found["--mem"] == ["4G"]
    assert found["--time"] == ["30"] and found["--exclude"] == ["n1"]
    assert "--gres" not in found
    assert "module load x" in script.splitlines()
    assert script.splitlines()[-1] == "exec /py -m simcons worker --device auto --kinds=probe"


def test_sqlite_is_refused_unless_allowed(tmp_path: Path) -> None:
    options = SlurmOptions(tasks=2, log_dir=tmp_path)
    url = f"sqlite:///{tmp_path}/simcons.db"
    with pytest.raises(ValueError, match="PostgreSQL"):
        render_script(options, db_url=url, home=tmp_path)
    assert "export SIMCONS_DB=" in render_script(
        options, db_url=url, home=tmp_path, allow_sqlite=True
    )
    env = SimpleNamespace(url=url, home=tmp_path)
    refused = CliRunner().invoke(slurm_command, ["--tasks", "2"], obj=env)
    assert refused.exit_code != 0 and "--allow-sqlite" in refused.output
    allowed = CliRunner().invoke(slurm_command, ["--tasks", "2", "--allow-sqlite"], obj=env)
    assert allowed.exit_code == 0, allowed.output


@pytest.mark.parametrize("bad", ["4h", "1:2:3:4", "00:61:00", "", "0", "1-", "-1:00", "4:00:0x"])
def test_bad_time_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="time"):
        render_script(SlurmOptions(tasks=1, log_dir=tmp_path, time=bad), db_url=PG_URL,
                      home=tmp_path)


@pytest.mark.parametrize(
    ("limit", "seconds"),
    [("90", 5400), ("2:30", 150), ("04:00:00", 14400), ("1-12", 129600), ("1-0:30", 88200),
     ("2-01:02:03", 176523)],
)
def test_time_limit_seconds(limit: str, seconds: int) -> None:
    assert time_limit_seconds(limit) == seconds


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": 0}, "tasks must be at least 1"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"gpus_per_task": -1}, "gpus_per_task"),
        ({"mem": "lots"}, "mem"),
        ({"time": "00:01:00", "signal_seconds": 60}, "shorter than the time limit"),
        ({"partition": "gpu a100"}, "partition"),
        ({"extra_sbatch": ("exclude=node3",)}, "starting with '-'"),
        ({"setup": ("a\nb",)}, "single line"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    options = SlurmOptions(**{"tasks": 1, "log_dir": tmp_path, **change})
    with pytest.raises(ValueError, match=message):
        render_script(options, db_url=PG_URL, home=tmp_path)


def test_submit_without_sbatch_names_dry_run(tmp_path: Path) -> None:
    with pytest.raises(SlurmError, match="--dry-run"):
        submit(tmp_path / "job.sbatch", sbatch="simcons-no-such-sbatch")


def test_cli_submit_without_sbatch_names_dry_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    env = SimpleNamespace(url=PG_URL, home=tmp_path)
    result = CliRunner().invoke(slurm_command, ["--tasks", "1", "--submit"], obj=env)
    assert result.exit_code == 1 and "--dry-run" in result.output


def test_python_dash_m_simcons() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simcons", "--help"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("Usage: simcons ")


# ---- a stand-in for the worker's Python --------------------------------------------------------

STAND_IN = """#!{python}
import json, os, signal, sys, time
from pathlib import Path

out = Path({out!r})
task = os.environ.get("SLURM_ARRAY_TASK_ID", "none")
record = {{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in {keys!r}}}}}
(out / f"task-{{task}}.json").write_text(json.dumps(record))
if {wait_for_term!r}:
    def stop(signum, frame):
        (out / f"term-{{task}}").write_text(str(time.time()))
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    (out / f"started-{{task}}").write_text(str(time.time()))
    time.sleep(300)
"""


def stand_in(out: Path, *, wait_for_term: bool = False) -> str:
    """Write a stand-in `python` that records argv and environment under out; return its path."""
    path = out / ("python-term" if wait_for_term else "python")
    path.write_text(
        STAND_IN.format(python=sys.executable, out=str(out), keys=RECORDED_ENV,
                        wait_for_term=wait_for_term)
    )
    path.chmod(0o755)
    return str(path)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll check() until it holds; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


# ---- a real one-node SLURM cluster ---------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(root: Path, host: str) -> str:
    """A minimal one-node slurm.conf with every path under root and no accounting."""
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    cpus = os.cpu_count() or 1
    return f"""\
ClusterName=simconstest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb // 2} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def cluster_state(procs: list[subprocess.Popen]) -> str:
    """`<daemon> exited` if one died, else the node's sinfo state (idle, down, ...) or ''."""
    for proc in procs:
        if proc.poll() is not None:
            return f"{Path(proc.args[0]).name} exited"
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=5
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate the daemons we started, newest first, killing any that linger."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, for a skip reason."""
    return " | ".join(path.read_text().splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running one-node SLURM (munged, slurmctld, slurmd) whose clients find it via SLURM_CONF."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [name for name in SLURM_BINARIES if shutil.which(name, path=search) is None]
    if missing:
        pytest.skip(f"real-SLURM tests need {', '.join(missing)}: apt-get install slurm-wlm")
    if os.geteuid() != 0:
        pytest.skip("real-SLURM tests start slurmd, which must run as root")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host))
    sbin = {name: shutil.which(name, path=search) for name in ("munged", "slurmctld", "slurmd")}
    commands = [
        [sbin["munged"], "-F", "-f", f"--key-file={key}", f"--socket={root}/munge/munge.socket",
         f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/log/munged.log",
         f"--seed-file={root}/munge/munged.seed"],
        [sbin["slurmctld"], "-D", "-i", "-f", str(conf)],
        [sbin["slurmd"], "-D", "-N", host, "-f", str(conf)],
    ]
    procs: list[subprocess.Popen] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(conf))
        try:
            for command in commands:
                name = Path(command[0]).name
                with open(root / "log" / f"{name}.out", "w") as log:
                    procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
                time.sleep(0.5)
            deadline = time.monotonic() + 30
            while (state := cluster_state(procs)) != "idle":
                if state.endswith("exited") or time.monotonic() > deadline:
                    names = [Path(p.args[0]).name for p in procs]
                    logs = "; ".join(f"{n}: {tail(root / 'log' / f'{n}.out', 2)}" for n in names)
                    pytest.skip(f"local SLURM did not start ({state or 'node not idle'}): {logs}")
                time.sleep(0.3)
            yield root
        finally:
            if all(proc.poll() is None for proc in procs):
                subprocess.run(["scancel", "--user=root"], capture_output=True, timeout=20)
            stop(procs)


def job_gone(job_id: str) -> bool:
    """Whether squeue no longer lists any task of the job."""
    done = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True)
    return done.returncode != 0 or not done.stdout.strip()


@pytest.mark.slow
def test_real_slurm_runs_every_array_task(
    slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    home = tmp_path / "home"
    options = SlurmOptions(tasks=3, log_dir=logs, gpus_per_task=0, cpus_per_task=1, mem="50M",
                           time="00:05:00", worker_args=("--max-jobs", "1"))
    path = tmp_path / "workers.sbatch"
    write_script(path, render_script(options, db_url=PG_URL, home=home, python=stand_in(out)))
    monkeypatch.setenv("SIMCONS_DB", "sqlite:///not-this-one.db")

    job_id = submit(path)

    assert job_id.isdigit()
    wait_for(lambda: job_gone(job_id), 30, f"array job {job_id} to finish")
    records = {p.name: json.loads(p.read_text()) for p in out.glob("task-*.json")}
    assert sorted(records) == ["task-0.json", "task-1.json", "task-2.json"]
    for task in range(3):
        record = records[f"task-{task}.json"]
        assert record["argv"] == ["-m", "simcons", "worker", "--device", "auto", "--max-jobs", "1"]
        assert record["env"] == {
            "SIMCONS_DB": PG_URL,
            "SIMCONS_HOME": str(home),
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_JOB_ID": job_id,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        log = (logs / f"simcons-{job_id}_{task}.out").read_text()
        assert f"simcons worker: job {job_id} task {task} on " in log


@pytest.mark.slow
def test_real_slurm_signals_the_worker_before_the_time_limit(slurm: Path, tmp_path: Path) -> None:
    """`--signal=B:TERM@50` with a one-minute limit: TERM reaches the exec'd worker early."""
    out = tmp_path / "out"
    out.mkdir()
    options = SlurmOptions(tasks=1, log_dir=tmp_path, gpus_per_task=0, cpus_per_task=1,
                           mem="50M", time="00:01:00", signal_seconds=50)
    path = tmp_path / "workers.sbatch"
    text = render_script(options, db_url=PG_URL, home=tmp_path,
                         python=stand_in(out, wait_for_term=True))
    write_script(path, text)

    job_id = submit(path)

    wait_for(lambda: (out / "started-0").exists(), 15, "the array task to start")
    # slurmctld checks time limits every 30 s, so TERM comes 10-40 s after the start
    wait_for(lambda: (out / "term-0").exists(), 50, "SIGTERM from --signal=B:TERM@50")
    elapsed = float((out / "term-0").read_text()) - float((out / "started-0").read_text())
    assert elapsed < 55, f"TERM came {elapsed:.0f}s in: from the time limit, not --signal"
    wait_for(lambda: job_gone(job_id), 15, f"job {job_id} to end after TERM")
