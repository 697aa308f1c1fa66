"""The `simcons` command line: store, ingest, extraction, similarity, consistency, SQL."""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from simcons import __version__
from simcons.catalog import CatalogError
from simcons.slurm import slurm_command
from simcons.storage import (
    ResultStore,
    SchemaError,
    StoreError,
    data_dir,
    database_url,
    make_engine,
    migrate,
)

USER_ERRORS: tuple[type[Exception], ...] = (
    CatalogError,
    SchemaError,
    StoreError,
    FileNotFoundError,
    ValueError,
)


class Env:
    """What every command needs: the data folder and the database URL."""

    def __init__(self, db: str | None, home: str | None, datasets_root: str | None,
                 loader_workers: int = 0) -> None:
        self.home = data_dir(home)
        self.url = database_url(db, self.home)
        self.datasets_root = Path(datasets_root).resolve() if datasets_root else None
        self.loader_workers = loader_workers

    def store(self, *, read_only: bool = False) -> ResultStore:
        """Open the store, checking its schema revision."""
        return ResultStore(self.url, read_only=read_only)

    def context(self, store: ResultStore, device: str, progress: bool = True):  # noqa: ANN201
        """A workflow context on this store."""
        from simcons.workflow import Context

        return Context(
            store=store,
            home=self.home,
            datasets_root=self.datasets_root,
            device=resolve_device(device),
            progress=progress,
            loader_workers=self.loader_workers,
        )


def resolve_device(device: str) -> str:
    """`auto` means CUDA when there is one, else the CPU; an explicit CUDA device must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise click.UsageError(f"--device {device}: use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.UsageError(f"--device {device}: no CUDA device here; use --device cpu")
    return device


class SimconsGroup(click.Group):
    """A group that turns the package's own errors into one clear line and exit status 2.

    Set SIMCONS_DEBUG=1 to see the traceback instead.
    """

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            _fail(exc, str(exc))
        except (OperationalError, ArgumentError, DatabaseError) as exc:
            _fail(exc, f"cannot use the database {_shown_url(ctx)}: {_first_line(exc)}; check "
                       "--db (or SIMCONS_DB) names a reachable SQLite file or PostgreSQL database")
        except ModuleNotFoundError as exc:
            _fail(exc, f"{exc}; install the package that provides {exc.name!r} "
                       "(PostgreSQL: pip install 'psycopg[binary]')")


def _fail(exc: BaseException, message: str) -> None:
    """One red line on stderr and exit status 2 (SIMCONS_DEBUG=1: the traceback instead)."""
    if os.environ.get("SIMCONS_DEBUG"):
        raise exc
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _shown_url(ctx: click.Context) -> str:
    return _where(ctx.obj) if ctx.obj else "?"


@click.group(cls=SimconsGroup)
@click.version_option(__version__, prog_name="simcons")
@click.option(
    "--db", envvar="SIMCONS_DB", help="Database URL (default: SQLite in the data folder)."
)
@click.option("--home", envvar="SIMCONS_HOME", help="Data folder (default: ./simcons-data).")
@click.option(
    "--datasets-root",
    envvar="SIMCONS_DATASETS",
    help="Folder holding webdataset and image-folder datasets.",
)
@click.option("--loader-workers", type=click.IntRange(min=0), default=0,
              envvar="SIMCONS_LOADER_WORKERS", show_default=True,
              help="Processes decoding images while a model extracts (0: in the main process).")
@click.pass_context
def main(ctx: click.Context, db: str | None, home: str | None, datasets_root: str | None,
         loader_workers: int) -> None:
    """simcons: similarity of vision models' representations and its consistency across datasets."""
    ctx.obj = Env(db, home, datasets_root, loader_workers)


# ---- db ------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Create, upgrade and inspect the store's schema."""


@db.command("init")
@click.pass_obj
def db_init(env: Env) -> None:
    """Create a new store at the newest schema revision (an existing store is upgraded)."""
    engine = make_engine(env.url)
    migrate.upgrade(engine)
    click.echo(f"store ready at {_where(env)} (revision {migrate.current_revision(engine)})")


@db.command("upgrade")
@click.pass_obj
def db_upgrade(env: Env) -> None:
    """Bring an existing store to the newest revision, keeping its results."""
    engine = make_engine(env.url)
    before = migrate.current_revision(engine)
    if before is None:
        raise SchemaError(f"no simcons store at {_where(env)}; run `simcons db init` first")
    migrate.upgrade(engine)
    click.echo(f"{_where(env)}: revision {before} -> {migrate.current_revision(engine)}")


@db.command("status")
@click.pass_obj
def db_status(env: Env) -> None:
    """Print the store's revision, the newest one, and its row counts."""
    engine = make_engine(env.url)
    current, head = migrate.current_revision(engine), migrate.head_revision()
    click.echo(
        f"store: {_where(env)}\nrevision: {current or 'none (run `simcons db init`)'}"
        f"\nnewest: {head}"
    )
    if current != head:
        if current is not None:
            click.echo("run `simcons db upgrade` to bring it to the newest revision")
        return
    store = env.store(read_only=True)
    tables = (
        "models",
        "datasets",
        "extraction_runs",
        "metrics",
        "pair_similarities",
        "probe_results",
    )
    for table in tables:
        _, rows = store.query(f"SELECT COUNT(*) FROM {table}")
        click.echo(f"  {table:<18} {rows[0][0]}")


def _where(env: Env) -> str:
    """The store's URL as shown to the user: password hidden, or as given if unparsable."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(env.url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(env.url)


# ---- ingest --------------------------------------------------------------------------------------


@main.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--results",
    "results",
    is_flag=True,
    help="SOURCES are folders of <dataset>/<metric>/similarity_matrix.pt results.",
)
@click.option("--replace", is_flag=True,
              help="With --results: overwrite pairs simcons computed itself.")
@click.pass_obj
def ingest(env: Env, sources: Sequence[str], results: bool, replace: bool) -> None:
    """Ingest catalogs (`paper`, `demo`, a YAML or CSV file) or existing similarity results."""
    from simcons.ingest import ingest_catalog, ingest_results

    store = env.store()
    for source in sources:
        reports = (ingest_results(store, Path(source), replace=replace) if results
                   else ingest_catalog(store, source))
        for report in reports:
            click.echo(report.line())


# ---- listing -------------------------------------------------------------------------------------


@main.command("models")
@click.option("--where", "where", default="all", help="`all`, name=value[,...] or models:a,b")
@click.pass_obj
def list_models(env: Env, where: str) -> None:
    """List stored models with their attributes."""
    store = env.store(read_only=True)
    keys = _model_keys(store, where)
    _, rows = store.query(
        "SELECT model, loader, module_name, token_rule, embedding_dim, objective, architecture, "
        "training_data, size_class FROM model_catalog ORDER BY model"
    )
    _print_table(
        [
            "model",
            "loader",
            "layer",
            "token",
            "dim",
            "objective",
            "architecture",
            "training_data",
            "size",
        ],
        [r for r in rows if r[0] in set(keys)],
    )


@main.command("datasets")
@click.pass_obj
def list_datasets(env: Env) -> None:
    """List stored datasets with their categories."""
    store = env.store(read_only=True)
    _print_table(
        ["dataset", "name", "category", "source"],
        [(d.key, d.name, d.category, d.source) for d in store.datasets()],
    )


# ---- data ----------------------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Obtain the demo's datasets."""


@data.command("fetch")
@click.pass_obj
def data_fetch(env: Env) -> None:
    """Obtain the demo datasets that are not inside an installed Python package."""
    from simcons.extract.datasets import fetch_demo_data

    for line in fetch_demo_data(env.home):
        click.echo(line)


# ---- extraction and similarity -------------------------------------------------------------------

_models_opt = click.option(
    "--models",
    "models",
    default="all",
    show_default=True,
    help="`all`, name=value[,...] filters, or a comma list of keys.",
)
_datasets_opt = click.option(
    "--datasets",
    "datasets",
    default="all",
    show_default=True,
    help="`all` or a comma list of dataset keys.",
)
_device_opt = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="`auto` (CUDA if present), `cpu`, `cuda` or `cuda:N`.",
)
_split_opt = click.option("--split", default="train", show_default=True)
_max_opt = click.option(
    "--max-samples",
    type=int,
    default=10_000,
    show_default=True,
    help="Stratified subsample size per dataset (0: all).",
)
_per_class_opt = click.option(
    "--per-class", type=int, default=None, help="Samples per class instead (ImageNet-1k: 10)."
)
_seed_opt = click.option("--seed", type=int, default=42, show_default=True)


def _rule(split: str, max_samples: int, per_class: int | None, seed: int):  # noqa: ANN202
    from simcons.workflow import SubsetRule

    return SubsetRule(split=split, max_samples=max_samples or None, per_class=per_class, seed=seed)


@main.command()
@_models_opt
@_datasets_opt
@_split_opt
@_max_opt
@_per_class_opt
@_seed_opt
@_device_opt
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.pass_obj
def extract(
    env: Env,
    models: str,
    datasets: str,
    split: str,
    max_samples: int,
    per_class: int | None,
    seed: int,
    device: str,
    batch_size: int,
) -> None:
    """Extract L2-normalised features into HDF5 files; finished runs are skipped."""
    from simcons.workflow import run_extractions

    store = env.store()
    ctx = env.context(store, device)
    outcomes = run_extractions(
        ctx,
        store.models(_model_keys(store, models)),
        _datasets(store, datasets),
        _rule(split, max_samples, per_class, seed),
        batch_size=batch_size,
        log=click.echo,
    )
    sys.exit(1 if _report(outcomes) else 0)


@main.command()
@_models_opt
@_datasets_opt
@click.option(
    "--metrics",
    "metrics",
    default="cka_kernel_linear_unbiased",
    show_default=True,
    help="Comma list of metric slugs.",
)
@_split_opt
@_max_opt
@_per_class_opt
@_seed_opt
@_device_opt
@click.option("--recompute", is_flag=True, help="Replace stored pairs instead of skipping them.")
@click.pass_obj
def similarity(
    env: Env,
    models: str,
    datasets: str,
    metrics: str,
    split: str,
    max_samples: int,
    per_class: int | None,
    seed: int,
    device: str,
    recompute: bool,
) -> None:
    """Compute pairwise similarities from stored features; stored pairs are skipped."""
    from simcons.workflow import run_similarities

    parsed = _metrics(metrics)
    store = env.store()
    ctx = env.context(store, device)
    outcomes = run_similarities(
        ctx,
        store.models(_model_keys(store, models)),
        _datasets(store, datasets),
        parsed,
        _rule(split, max_samples, per_class, seed),
        recompute=recompute,
        log=click.echo,
    )
    sys.exit(1 if _report(outcomes) else 0)


@main.command()
@click.option("--metric", default="cka_kernel_linear_unbiased", show_default=True)
@click.option("--theta", default=None, help="Model set: `all`, name=value[,...] or models:a,b,c")
@click.option("--phi", default=None, help="Second model set (default: the same as --theta).")
@click.option("--by", "by", default=None, help="All set pairs of one attribute, e.g. objective.")
@_datasets_opt
@click.option(
    "--method", type=click.Choice(["pearson", "spearman"]), default="pearson", show_default=True
)
@click.option("--rows/--no-rows", default=True, help="Print one row per dataset pair.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the per-dataset-pair rows to this CSV file.",
)
@click.pass_obj
def consistency(
    env: Env,
    metric: str,
    theta: str | None,
    phi: str | None,
    by: str | None,
    datasets: str,
    method: str,
    rows: bool,
    csv_path: str | None,
) -> None:
    """Similarity consistency R(Theta, Phi): rho for every pair of datasets, and its summary."""
    results = _consistency(env.store(read_only=True), metric, theta, phi, by, datasets, method)
    if not any(len(r.table) for r in results):
        raise StoreError(
            "no dataset pair to correlate: R needs two datasets that both hold more than 2 of "
            f"the selected model pairs for {metric} (sets with 2 or fewer pairs are skipped, as "
            "in the paper); select more models or datasets, or compute their pairs first"
        )
    if rows and not by:
        for r in results:
            _print_table(list(r.table.columns), r.table.itertuples(index=False))
    _print_summaries(results)
    if csv_path:
        _write_consistency_csv(csv_path, results)
        click.echo(f"wrote {csv_path}")


def _consistency(
    store: ResultStore,
    metric: str,
    theta: str | None,
    phi: str | None,
    by: str | None,
    datasets: str,
    method: str,
) -> list:
    from simcons.consistency.query import consistency as one
    from simcons.consistency.query import consistency_by
    from simcons.consistency.sets import parse_set, sets_by_attribute

    ds = None if datasets == "all" else [d.key for d in _datasets(store, datasets)]
    if by:
        if theta or phi:
            raise click.UsageError("give either --by or --theta/--phi, not both")
        return consistency_by(
            store, sets_by_attribute(store, by), metric, datasets=ds, method=method
        )
    a = parse_set(store, theta or "all")
    b = parse_set(store, phi) if phi else a
    return [one(store, a, b, metric, datasets=ds, method=method)]


def _print_summaries(results: list) -> None:
    cols = ["theta", "phi", "dataset_pairs", "model_pairs", "median", "mean", "std", "q25", "q75"]
    _print_table(cols, ([r.summary()[c] for c in cols] for r in results))


def _write_consistency_csv(path: str, results: list) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["theta", "phi", "metric", "method", "dataset_a", "dataset_b", "n_pairs", "rho"]
        )
        for r in results:
            for row in r.table.itertuples(index=False):
                writer.writerow([r.theta.label, r.phi.label, r.metric, r.method, *row])


# ---- probes and performance gaps -----------------------------------------------------------------

_seeds_opt = click.option("--seeds", default="0,1,2", show_default=True,
                          help="Probe seeds (comma list); the paper averages 0, 1, 2.")
_train_max_opt = click.option("--train-max-samples", type=int, default=0, show_default=True,
                              help="Train samples for the probe (0: the whole train split).")
_test_split_opt = click.option("--test-split", default="test", show_default=True,
                               help="Split to evaluate on (ImageNet-1k: val).")
_test_max_opt = click.option("--test-max-samples", type=int, default=0, show_default=True,
                             help="Test samples (0: the whole test split).")
_probe_set_opt = click.option("--probe-setting", "probe_settings", multiple=True,
                              metavar="NAME=VALUE",
                              help="Override a probe setting, e.g. epochs=10 or "
                                   "learning_rates=0.1,0.01 (default: the paper's protocol).")


def _probe_setup(seeds: str, train_max: int, test_split: str, test_max: int, split: str,
                 seed: int, settings: Sequence[str]):  # noqa: ANN202 - a ProbeSetup
    from simcons.workflow import ProbeSetup, SubsetRule

    return ProbeSetup(
        train=SubsetRule(split=split, max_samples=train_max or None, seed=seed),
        test=SubsetRule(split=test_split, max_samples=test_max or None, seed=seed),
        seeds=_seeds(seeds),
        config=_probe_config(settings),
    )


def _probe_config(settings: Sequence[str]) -> dict:
    """Parse NAME=VALUE overrides into ProbeConfig fields (checked by building one)."""
    import dataclasses

    from simcons.probes import ProbeConfig

    fields = {f.name: f for f in dataclasses.fields(ProbeConfig)}
    out: dict = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise click.UsageError(f"--probe-setting {item!r}: write NAME=VALUE with NAME one "
                                   f"of {', '.join(fields)}")
        if name == "learning_rates":
            out[name] = [float(v) for v in value.split(",")]
        else:
            out[name] = type(getattr(ProbeConfig(), name))(value)
    ProbeConfig(**out)
    return out


@main.command()
@_models_opt
@_datasets_opt
@_seeds_opt
@_split_opt
@_train_max_opt
@_test_split_opt
@_test_max_opt
@_seed_opt
@_probe_set_opt
@_device_opt
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Extraction batch size (for features not yet extracted).")
@click.pass_obj
def probe(env: Env, models: str, datasets: str, seeds: str, split: str, train_max_samples: int,
          test_split: str, test_max_samples: int, seed: int, probe_settings: Sequence[str],
          device: str, batch_size: int) -> None:
    """Linear probes by the paper's protocol; extracts missing features, skips stored probes."""
    from simcons.workflow import run_probes

    store = env.store()
    setup = _probe_setup(seeds, train_max_samples, test_split, test_max_samples, split, seed,
                         probe_settings)
    outcomes = run_probes(env.context(store, device), store.models(_model_keys(store, models)),
                          _datasets(store, datasets), setup, batch_size=batch_size, log=click.echo)
    for o in outcomes:
        if o.what.startswith("probe") and o.status == "done":
            click.echo(f"{o.what}: {o.detail}")
    sys.exit(1 if _report(outcomes) else 0)


@main.command()
@click.option("--metric", default="cka_kernel_linear_unbiased", show_default=True)
@click.option("--accuracy", default="test_top1", show_default=True,
              type=click.Choice(["test_top1", "test_top5", "test_balanced_acc"]))
@_models_opt
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None)
@click.pass_obj
def gaps(env: Env, metric: str, accuracy: str, models: str, csv_path: str | None) -> None:
    """Per dataset: correlation of pair similarity with the pair's accuracy gap."""
    from simcons.consistency.gaps import by_category, gap_correlations

    store = env.store(read_only=True)
    keys = None if models == "all" else _model_keys(store, models)
    table = gap_correlations(store, metric, accuracy=accuracy, models=keys)
    if table.empty:
        raise StoreError(f"no dataset has both {metric} pairs and probe results; run "
                         "`simcons similarity` and `simcons probe` first")
    _print_table(list(table.columns), table.itertuples(index=False))
    click.echo("")
    summary = by_category(table)
    _print_table(list(summary.columns), summary.itertuples(index=False))
    if csv_path:
        table.to_csv(csv_path, index=False)
        click.echo(f"wrote {csv_path}")


# ---- queue and workers ---------------------------------------------------------------------------


@main.command("plan")
@_models_opt
@_datasets_opt
@click.option("--metrics", "metrics", default="cka_kernel_linear_unbiased", show_default=True,
              help="Comma list of metric slugs.")
@_split_opt
@_max_opt
@_per_class_opt
@_seed_opt
@click.option("--block-pairs", type=click.IntRange(min=1), default=None,
              help="At most this many model pairs per similarity job (default: one block).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--probes/--no-probes", default=False, show_default=True,
              help="Also queue linear probes (and the extractions they need).")
@_seeds_opt
@_train_max_opt
@_test_split_opt
@_test_max_opt
@_probe_set_opt
@click.pass_obj
def plan_command(env: Env, models: str, datasets: str, metrics: str, split: str,
                 max_samples: int, per_class: int | None, seed: int, block_pairs: int | None,
                 max_attempts: int, probes: bool, seeds: str, train_max_samples: int,
                 test_split: str, test_max_samples: int, probe_settings: Sequence[str]) -> None:
    """Queue the work for workers: only what is neither stored nor queued yet."""
    from simcons.plan import plan
    from simcons.storage.jobs import JobQueue

    store = env.store()
    report = plan(env.context(store, "cpu", progress=False), JobQueue(store),
                  store.models(_model_keys(store, models)), _datasets(store, datasets),
                  _metrics(metrics),
                  _rule(split, max_samples, per_class, seed), block_pairs=block_pairs,
                  probes=_probe_setup(seeds, train_max_samples, test_split, test_max_samples,
                                      split, seed, probe_settings) if probes else None,
                  max_attempts=max_attempts)
    for line in report.lines():
        click.echo(line)


@main.command()
@click.option("--wait", is_flag=True, help="Keep polling for work instead of exiting when idle.")
@click.option("--processes", type=int, default=1, show_default=True,
              help="Start this many local worker processes.")
@click.option("--lease", "lease", type=float, default=120.0, show_default=True,
              help="Lease seconds; renewed by a heartbeat every third of it.")
@click.option("--poll", type=float, default=5.0, show_default=True)
@click.option("--kinds", default=None, help="Only these job kinds (comma list).")
@click.option("--max-jobs", type=int, default=None, help="Exit after this many jobs.")
@_device_opt
@click.option("--progress/--no-progress", default=False, show_default=True)
@click.pass_obj
def worker(env: Env, wait: bool, processes: int, lease: float, poll: float, kinds: str | None,
           max_jobs: int | None, device: str, progress: bool) -> None:
    """Claim and run queued jobs until none is left; SIGTERM/SIGINT release the current job."""
    from simcons.storage.jobs import JobQueue
    from simcons.worker import Worker

    if processes > 1:
        child = ["worker", "--lease", str(lease), "--poll", str(poll), "--device", device,
                 "--progress" if progress else "--no-progress"]
        child += (["--wait"] if wait else []) + (["--kinds", kinds] if kinds else [])
        child += ["--max-jobs", str(max_jobs)] if max_jobs else []
        sys.exit(_spawn_workers(env, processes, child))
    store = env.store()
    report = Worker(env.context(store, device, progress=progress), JobQueue(store),
                    lease_seconds=lease, wait=wait, poll_seconds=poll,
                    kinds=[k.strip() for k in kinds.split(",")] if kinds else None,
                    max_jobs=max_jobs, log=click.echo).run()
    click.echo(f"[{report.owner}] {report.done} done, {report.failed} failed, "
               f"{report.released} released, {report.lost} lost to another worker")


def _spawn_workers(env: Env, n: int, args: list[str]) -> int:
    """Run n single worker processes on this store; forward SIGTERM/SIGINT to them."""
    import signal
    import subprocess

    base = [sys.executable, "-m", "simcons", "--db", env.url, "--home", str(env.home),
            "--loader-workers", str(env.loader_workers)]
    if env.datasets_root:
        base += ["--datasets-root", str(env.datasets_root)]
    children = [subprocess.Popen([*base, *args]) for _ in range(n)]

    def forward(signum: int, _frame: object) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(c.wait() for c in children)


@main.command()
@click.option("--errors/--no-errors", default=True, help="List failed jobs with their errors.")
@click.option("--traceback", "show_tb", is_flag=True, help="Include the failures' tracebacks.")
@click.option("--retry-failed", is_flag=True, help="Queue failed jobs again.")
@click.pass_obj
def status(env: Env, errors: bool, show_tb: bool, retry_failed: bool) -> None:
    """Jobs queued, running, done and failed per kind, with the failures' errors."""
    from simcons.storage.jobs import STATUSES, JobQueue

    store = env.store(read_only=not retry_failed)
    queue = JobQueue(store)
    if retry_failed:
        click.echo(f"queued {queue.retry_failed()} failed jobs again")
    counts = queue.counts()
    _print_table(["kind", *STATUSES], ([k, *[c[s] for s in STATUSES]] for k, c in counts.items()))
    if errors:
        for f in queue.failures():
            click.echo(f"{f.status} after {f.attempts} attempts: {f.key}\n  {f.error}")
            if show_tb and f.traceback:
                click.echo(f.traceback)


@main.group()
def weights() -> None:
    """Model weights: prefetch into the local caches (for compute nodes without internet)."""


@weights.command("fetch")
@_models_opt
@click.pass_obj
def weights_fetch(env: Env, models: str) -> None:
    """Download each model's weights into the caches of timm, open_clip, torch hub, HF."""
    from simcons.workflow import load_model

    store = env.store(read_only=True)
    failed = 0
    for spec in store.models(_model_keys(store, models)):
        try:
            loaded = load_model(spec, "cpu")
            click.echo(f"ok      {spec.key}: {loaded.weights_source}")
        except Exception as exc:  # noqa: BLE001 - report each model, go on with the rest
            failed += 1
            click.echo(f"FAILED  {spec.key}: {exc}", err=True)
    sys.exit(1 if failed else 0)


# ---- SQL -----------------------------------------------------------------------------------------


@main.command()
@click.argument("statement")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the result to this CSV file instead of printing it.",
)
@click.pass_obj
def sql(env: Env, statement: str, csv_path: str | None) -> None:
    """Run one read-only SQL statement on the store (views: pair_view, model_catalog, ...)."""
    from simcons.storage.store import read_only_statement

    columns, rows = env.store(read_only=True).query(read_only_statement(statement))
    if csv_path:
        with open(csv_path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(rows)
        click.echo(f"wrote {len(rows)} rows to {csv_path}")
    elif columns:
        _print_table(columns, rows)


# ---- demo ----------------------------------------------------------------------------------------


@main.command()
@click.option("--samples", type=click.IntRange(min=4), default=300, show_default=True,
              help="Stratified train samples per dataset (similarities and probe training).")
@click.option("--test-samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Stratified test samples per dataset for the probes.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Probe seeds.")
@_device_opt
@click.option("--metrics", default="cka_kernel_linear_unbiased,cka_kernel_rbf_unbiased_sigma_0.4,"
              "rsa_method_correlation_corr_method_spearman", show_default=True)
@click.pass_obj
def demo(env: Env, samples: int, test_samples: int, seeds: str, device: str, metrics: str) -> None:
    """The main job on the built-in demo: real packaged weights and random-init controls."""
    from simcons.demo import run_demo

    run_demo(env, samples=samples, test_samples=test_samples, seeds=_seeds(seeds),
             device=resolve_device(device), metrics=[m.slug for m in _metrics(metrics)])


# ---- shared helpers ------------------------------------------------------------------------------


def _model_keys(store: ResultStore, where: str) -> list[str]:
    from simcons.consistency.sets import parse_set

    return list(parse_set(store, where).models)


def _datasets(store: ResultStore, datasets: str):  # noqa: ANN202
    keys = None if datasets == "all" else [k.strip() for k in datasets.split(",") if k.strip()]
    if keys == []:
        raise click.UsageError("--datasets names no dataset; give `all` or a comma list of keys")
    return store.datasets(keys)


def _metrics(metrics: str) -> list:
    """Parse a comma list of metric slugs (at least one)."""
    from simcons.metrics import Metric

    slugs = list(dict.fromkeys(m.strip() for m in metrics.split(",") if m.strip()))
    if not slugs:
        raise click.UsageError("--metrics names no metric; e.g. cka_kernel_linear_unbiased")
    return [Metric.from_slug(slug) for slug in slugs]


def _seeds(seeds: str) -> tuple[int, ...]:
    """Parse a comma list of distinct integer seeds (at least one)."""
    try:
        parsed = tuple(dict.fromkeys(int(x) for x in seeds.split(",") if x.strip()))
    except ValueError as exc:
        raise click.UsageError(f"--seeds {seeds!r}: give whole numbers, e.g. 0,1,2") from exc
    if not parsed or min(parsed) < 0:
        raise click.UsageError(f"--seeds {seeds!r}: give one or more seeds >= 0, e.g. 0,1,2")
    return parsed


def _report(outcomes: list) -> bool:
    """Print done/skipped/failed counts and the failures; True when something failed."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    for o in outcomes:
        if o.status == "failed":
            click.echo(f"  failed: {o.what}: {o.detail}", err=True)
    return counts["failed"] > 0


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _print_table(columns: Sequence[str], rows) -> None:  # noqa: ANN001 - any iterable of rows
    """Print rows as an aligned text table."""
    body = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for r in body:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))

main.add_command(slurm_command)
