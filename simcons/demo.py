"""The main job on the built-in demo catalog: set up, extract, compare, and print the results."""

from __future__ import annotations

import click
import numpy as np

from simcons.catalog import builtin_catalog
from simcons.ingest import ingest_catalog
from simcons.storage import make_engine, migrate


def run_demo(
    env, *, samples: int, test_samples: int, seeds: tuple[int, ...], device: str,  # noqa: ANN001
    metrics: list[str],
) -> None:
    """Fill the store with the demo grid (skipping what is done) and print the results."""
    from simcons.cli import _print_summaries, _print_table, _report
    from simcons.consistency.gaps import by_category, gap_correlations
    from simcons.consistency.query import consistency, consistency_by
    from simcons.consistency.sets import ModelSet, sets_by_attribute
    from simcons.extract.datasets import fetch_demo_data
    from simcons.metrics import Metric
    from simcons.workflow import (
        ProbeSetup,
        SubsetRule,
        run_extractions,
        run_probes,
        run_similarities,
    )

    click.secho(f"== store: {env.url}", bold=True)
    migrate.upgrade(make_engine(env.url))
    for line in fetch_demo_data(env.home):
        click.echo(f"data: {line}")
    store = env.store()
    for report in ingest_catalog(store, "demo"):
        click.echo(f"ingest: {report.line()}")
    catalog = builtin_catalog("demo")
    models, datasets = (
        store.models([m.key for m in catalog.models]),
        store.datasets([d.key for d in catalog.datasets]),
    )
    rule = SubsetRule(split="train", max_samples=samples, seed=42)
    ctx = env.context(store, device)
    parsed = [Metric.from_slug(m) for m in metrics]

    click.secho(
        f"== extracting {len(models)} models x {len(datasets)} datasets "
        f"(about {samples} stratified train samples each, device {ctx.device})",
        bold=True,
    )
    _report_soft(run_extractions(ctx, models, datasets, rule, log=click.echo), _report)
    click.secho("== pairwise similarities", bold=True)
    _report_soft(run_similarities(ctx, models, datasets, parsed, rule, log=click.echo), _report)

    keys = [m.key for m in models]
    for metric in parsed:
        for d in datasets:
            click.secho(f"\n-- {metric.slug} on {d.key} ({d.category})", bold=True)
            _print_matrix(keys, store.pair_values(d.key, metric.slug), _print_table)
    everything = ModelSet(f"all {len(keys)} demo models", tuple(keys))
    for metric in parsed:
        click.secho(f"\n== consistency over all {len(keys)} models, {metric.slug}", bold=True)
        result = consistency(store, everything, everything, metric.slug)
        _print_table(list(result.table.columns), result.table.itertuples(index=False))
        click.secho(f"\n== consistency by objective, {metric.slug}", bold=True)
        _print_summaries(
            [result, *consistency_by(store, sets_by_attribute(store, "objective"), metric.slug)]
        )
    setup = ProbeSetup(
        train=rule, test=SubsetRule(split="test", max_samples=test_samples, seed=42), seeds=seeds
    )
    click.secho(
        f"\n== linear probes (train: the same {samples} samples, test: about {test_samples} "
        f"stratified test samples, seeds {', '.join(map(str, seeds))})",
        bold=True,
    )
    _report_soft(run_probes(ctx, models, datasets, setup, log=click.echo), _report)
    _, rows = store.query(
        "SELECT model, dataset, n_seeds, test_top1, test_balanced_acc "
        "FROM probe_view ORDER BY dataset, model"
    )
    _print_table(["model", "dataset", "seeds", "top1", "balanced"], rows)
    slug = parsed[0].slug
    click.secho(f"\n== similarity ({slug}) vs performance gap |acc_a - acc_b|", bold=True)
    table = gap_correlations(store, slug)
    _print_table(list(table.columns), table.itertuples(index=False))
    summary = by_category(table)
    _print_table(list(summary.columns), summary.itertuples(index=False))
    click.echo(
        f"\nEverything is in the store: simcons --db {env.url} sql "
        '"SELECT * FROM pair_view LIMIT 5"'
    )


def _report_soft(outcomes: list, report) -> None:  # noqa: ANN001 - cli._report
    """Print the counts; failures are listed but the demo goes on with what it has."""
    if report(outcomes):
        click.secho(
            "some work failed (see above); results shown are those that succeeded", fg="yellow"
        )


def _print_matrix(keys: list[str], values: dict, print_table) -> None:  # noqa: ANN001
    """A model-by-model matrix with 1 on the diagonal; blank where a pair is missing."""
    n = len(keys)
    m = np.full((n, n), np.nan)
    np.fill_diagonal(m, 1.0)
    index = {k: i for i, k in enumerate(keys)}
    for (a, b), v in values.items():
        if a in index and b in index:
            m[index[a], index[b]] = m[index[b], index[a]] = v
    short = [k[:14] for k in keys]
    print_table(
        ["model", *short],
        ([short[i], *[None if np.isnan(x) else float(x) for x in m[i]]] for i in range(n)),
    )
