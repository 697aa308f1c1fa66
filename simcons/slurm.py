"""Run simcons workers on a SLURM cluster: render, write and submit a job-array sbatch script.

Each array task runs one `simcons worker` that claims queued jobs from the shared database
until none is left; SLURM sends it SIGTERM `signal_seconds` before the time limit so it can
release its current job and exit cleanly.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
MAX_SIGNAL_SECONDS = 65535
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class SlurmError(RuntimeError):
    """sbatch is missing or refused the script."""


class CliEnv(Protocol):
    """The part of the CLI's context object this command reads."""

    url: str
    home: Path


@dataclass(frozen=True)
class SlurmOptions:
    """What the sbatch script asks SLURM for, and how each array task starts its worker."""

    tasks: int
    log_dir: Path
    job_name: str = "simcons"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "04:00:00"
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem: str = "32G"
    constraint: str | None = None
    extra_sbatch: tuple[str, ...] = ()
    signal_seconds: int = 120
    max_parallel: int | None = None
    setup: tuple[str, ...] = ()
    worker_args: tuple[str, ...] = ()
    offline: bool = True


def time_limit_seconds(time: str) -> int:
    """Seconds in a SLURM time limit (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`)."""
    match = TIME_RE.match(time)
    if match is None:
        raise ValueError(
            f"time {time!r} is not a SLURM time limit; use e.g. 04:00:00, 90, or 1-12:00:00"
        )
    days, first, second, third = match.groups()
    if days is not None:
        hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
    elif third is not None:
        hours, minutes, seconds = int(first), int(second), int(third)
    elif second is not None:
        hours, minutes, seconds = 0, int(first), int(second)
    else:
        hours, minutes, seconds = 0, int(first), 0
    if third is not None and (minutes > 59 or seconds > 59):
        raise ValueError(f"time {time!r}: minutes and seconds must be below 60")
    total = ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise ValueError(f"time {time!r} is zero; give the worker a positive time limit")
    return total


def is_sqlite(db_url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return db_url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def mask_password(db_url: str) -> str:
    """The URL with its password replaced by ***, for printing."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", db_url)
    return url.render_as_string(hide_password=True) if url.password else db_url


def _token(name: str, value: str) -> str:
    """A value for an #SBATCH line, which cannot carry whitespace or line breaks."""
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{name} {value!r} must be non-empty without spaces (#SBATCH lines)")
    return value


def _extra(option: str) -> str:
    """A raw sbatch option such as `--exclude=node3` (an optional `#SBATCH ` prefix is dropped)."""
    text = option.removeprefix("#SBATCH").strip()
    if not text.startswith("-") or "\n" in text or "\r" in text:
        raise ValueError(f"sbatch option {option!r} must be one line starting with '-'")
    return text


def validate(options: SlurmOptions, db_url: str, *, allow_sqlite: bool) -> None:
    """Refuse options SLURM would reject or that would break a many-node run."""
    if is_sqlite(db_url) and not allow_sqlite:
        raise ValueError(
            f"database {mask_password(db_url)} is SQLite: its file locking is unreliable on "
            "shared filesystems (NFS, Lustre, GPFS) with workers on many nodes; use PostgreSQL "
            "(--db postgresql://user@host/dbname), or pass --allow-sqlite "
            "if every task runs on one node with a local disk"
        )
    if options.tasks < 1:
        raise ValueError(f"tasks must be at least 1, not {options.tasks}")
    if options.max_parallel is not None and options.max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, not {options.max_parallel}")
    if options.cpus_per_task < 1:
        raise ValueError(f"cpus_per_task must be at least 1, not {options.cpus_per_task}")
    if options.gpus_per_task < 0:
        raise ValueError(f"gpus_per_task must be 0 (CPU only) or more, not {options.gpus_per_task}")
    if not MEM_RE.match(options.mem):
        raise ValueError(f"mem {options.mem!r} is not a SLURM memory size; use e.g. 32G or 16000M")
    limit = time_limit_seconds(options.time)
    if not 0 <= options.signal_seconds <= MAX_SIGNAL_SECONDS:
        raise ValueError(f"signal_seconds must be 0..{MAX_SIGNAL_SECONDS}")
    if options.signal_seconds >= limit:
        raise ValueError(
            f"signal_seconds {options.signal_seconds} is not shorter than the time limit "
            f"{options.time}; lower it or raise the time"
        )
    for line in options.setup:
        if "\n" in line or "\r" in line:
            raise ValueError(f"setup line {line!r} must be a single line; pass --setup per line")


def sbatch_lines(options: SlurmOptions) -> list[str]:
    """The #SBATCH options, one per line, in a fixed order."""
    array = f"0-{options.tasks - 1}"
    if options.max_parallel is not None:
        array += f"%{options.max_parallel}"
    log_dir = _token("log_dir", str(options.log_dir))
    opts = [
        f"--job-name={_token('job_name', options.job_name)}",
        f"--array={array}",
        f"--time={options.time}",
        "--ntasks=1",
        f"--cpus-per-task={options.cpus_per_task}",
        f"--mem={options.mem}",
    ]
    if options.gpus_per_task:
        opts.append(f"--gres=gpu:{options.gpus_per_task}")
    for name in ("partition", "account", "qos", "constraint"):
        value = getattr(options, name)
        if value is not None:
            opts.append(f"--{name}={_token(name, value)}")
    opts += [f"--output={log_dir}/%x-%A_%a.out", f"--error={log_dir}/%x-%A_%a.err"]
    if options.signal_seconds:
        opts.append(f"--signal=B:TERM@{options.signal_seconds}")
    opts += [_extra(option) for option in options.extra_sbatch]
    return [f"#SBATCH {opt}" for opt in opts]


def render_script(
    options: SlurmOptions,
    *,
    db_url: str,
    home: Path,
    python: str = sys.executable,
    allow_sqlite: bool = False,
) -> str:
    """A complete bash sbatch script running one `simcons worker` per array task."""
    validate(options, db_url, allow_sqlite=allow_sqlite)
    worker = [python, "-m", "simcons", "worker", "--device", "auto", *options.worker_args]
    lines = [
        "#!/bin/bash",
        "# simcons workers: each array task claims queued jobs until none is left.",
        *sbatch_lines(options),
        "",
        "set -euo pipefail",
        f"export SIMCONS_DB={shlex.quote(db_url)}",
        f"export SIMCONS_HOME={shlex.quote(str(home))}",
    ]
    if options.offline:
        lines += [f"export {name}=1" for name in OFFLINE_VARS]
    if options.setup:
        # module and activate scripts often read unset variables, so relax nounset for them
        lines += ["set +u", *options.setup, "set -u"]
    lines += [
        'echo "simcons worker: job ${SLURM_ARRAY_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-?}'
        ' on $(hostname) at $(date -Is)"',
        "exec " + " ".join(shlex.quote(arg) for arg in worker),
    ]
    return "\n".join(lines) + "\n"


def write_script(path: Path, text: str) -> None:
    """Write the script readable by its owner only (mode 0600): it holds the database URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def submit(path: Path, *, sbatch: str = "sbatch") -> str:
    """Submit the script with `sbatch --parsable` and return the job id."""
    if shutil.which(sbatch) is None:
        raise SlurmError(
            f"{sbatch!r} not found on PATH: submit from a SLURM login node, or use --dry-run "
            "to print the script and submit it yourself"
        )
    done = subprocess.run(
        [sbatch, "--parsable", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {path}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";", 1)[0]


@click.command("slurm")
@click.option("--tasks", type=int, required=True, help="Workers to start (array size).")
@click.option("--job-name", default="simcons", show_default=True)
@click.option("--partition")
@click.option("--account")
@click.option("--qos")
@click.option("--constraint", help="Node features, e.g. 'a100|h100'.")
@click.option("--time", "time_", default="04:00:00", show_default=True, help="Per-task limit.")
@click.option("--gpus", type=int, default=1, show_default=True, help="GPUs per task (0: CPU).")
@click.option("--cpus", type=int, default=8, show_default=True, help="CPUs per task.")
@click.option("--mem", default="32G", show_default=True, help="Memory per task.")
@click.option("--log-dir", type=click.Path(path_type=Path), help="Default: <home>/slurm-logs.")
@click.option("--max-parallel", type=int, help="Run at most N tasks at once (array %N).")
@click.option(
    "--signal-seconds", type=int, default=120, show_default=True,
    help="SIGTERM the worker this long before the time limit (0: never).",
)
@click.option("--setup", multiple=True, help="Shell line run before the worker (repeatable).")
@click.option("--sbatch-option", multiple=True, help="Extra option, e.g. --exclude=node3.")
@click.option("--worker-arg", multiple=True, help="Extra `simcons worker` argument.")
@click.option("--online", is_flag=True, help="Let nodes download weights (no HF offline mode).")
@click.option("--python", default=sys.executable, show_default=True, help="Python on the nodes.")
@click.option("--allow-sqlite", is_flag=True, help="Accept a SQLite database (one node only).")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Script path [<home>/simcons-workers.sbatch]."
)
@click.option("--dry-run", is_flag=True, help="Print the script (password masked); write nothing.")
@click.option("--submit", "do_submit", is_flag=True, help="Write the script and sbatch it.")
@click.pass_obj
def slurm_command(
    env: CliEnv,
    tasks: int,
    job_name: str,
    partition: str | None,
    account: str | None,
    qos: str | None,
    constraint: str | None,
    time_: str,
    gpus: int,
    cpus: int,
    mem: str,
    log_dir: Path | None,
    max_parallel: int | None,
    signal_seconds: int,
    setup: Sequence[str],
    sbatch_option: Sequence[str],
    worker_arg: Sequence[str],
    online: bool,
    python: str,
    allow_sqlite: bool,
    out: Path | None,
    dry_run: bool,
    do_submit: bool,
) -> None:
    """Write (and optionally submit) an sbatch job array of `simcons worker` processes."""
    if dry_run and do_submit:
        raise click.UsageError("--dry-run and --submit exclude each other")
    home, url = Path(env.home), env.url
    options = SlurmOptions(
        tasks=tasks, log_dir=(log_dir or home / "slurm-logs").resolve(), job_name=job_name,
        partition=partition, account=account, qos=qos, time=time_, gpus_per_task=gpus,
        cpus_per_task=cpus, mem=mem, constraint=constraint, extra_sbatch=tuple(sbatch_option),
        signal_seconds=signal_seconds, max_parallel=max_parallel, setup=tuple(setup),
        worker_args=tuple(worker_arg), offline=not online,
    )
    render = {"home": home, "python": python, "allow_sqlite": allow_sqlite}
    try:
        if dry_run:
            click.echo(render_script(options, db_url=mask_password(url), **render), nl=False)
            return
        text = render_script(options, db_url=url, **render)
        path = (out or home / "simcons-workers.sbatch").resolve()
        write_script(path, text)
        options.log_dir.mkdir(parents=True, exist_ok=True)
        if do_submit:
            job_id = submit(path)
            click.echo(f"submitted job {job_id}: {tasks} worker(s); logs in {options.log_dir}")
        else:
            click.echo(f"wrote {path} (mode 0600); submit it with: sbatch {shlex.quote(str(path))}")
    except (ValueError, SlurmError) as exc:
        raise click.ClickException(str(exc)) from exc
