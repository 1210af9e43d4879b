"""``fhir-server import FORMAT FILE``: the import on the command line, with a progress bar
(records per second) and the summary as a table (rich)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_server.errors import FhirError
from fhir_server.socialmap.importer import DEFAULT_BATCH, Report, run_import
from fhir_server.socialmap.importer.formats import FORMATS


def add_parser(sub: Any, store_flags: Any) -> None:
    parser = sub.add_parser(
        "import",
        help="import social-map records (De Sociale Kaart, Bruxelles Social, Open Referral HSDS)",
    )
    store_flags(parser)
    parser.add_argument("format", choices=sorted(FORMATS))
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would change and write nothing"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the file is a full export: mark services of its source missing from it stale",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--verified-on", help="date for records without one (default today)")
    parser.add_argument("--language", default="en", help="language of HSDS texts (nl, fr, en)")
    parser.add_argument("--namespace", default="hsds", help="HSDS directory name (id namespace)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(settings: Any, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))


async def _run(settings: Any, args: argparse.Namespace) -> int:
    from fhir_server.app import create_app
    from fhir_server.service.context import RequestContext

    console = Console(stderr=True)
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        console.print(f"[red]cannot read {args.file}: {exc.strerror}[/red]")
        return 2
    app = create_app(settings)
    await app.startup()
    try:
        await app.service.search_parameters.wait_idle()
        ctx = RequestContext(base_url=settings.public_url, prefer_return="minimal")
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed}/{task.total} records"),
            TextColumn("{task.fields[rate]:.0f} records/s"),
            TimeElapsedColumn(),
            console=console,
            disable=args.quiet,
        ) as progress:
            task = progress.add_task(f"{args.format} import", total=None, rate=0.0)
            started = asyncio.get_running_loop().time()

            def advance(done: int, total: int) -> None:
                elapsed = max(1e-6, asyncio.get_running_loop().time() - started)
                progress.update(task, completed=done, total=total, rate=done / elapsed)

            report = await run_import(
                app.service,
                ctx,
                args.format,
                raw,
                dry_run=args.dry_run,
                full=args.full,
                batch_size=args.batch_size,
                verified_on=args.verified_on,
                options={"language": args.language, "namespace": args.namespace},
                progress=advance,
            )
    except FhirError as exc:
        console.print(f"[red]import refused: {exc}[/red]")
        return 1
    finally:
        await app.shutdown()
    print_report(report, Console())
    return 1 if report.failed else 0


def print_report(report: Report, console: Console) -> None:
    title = f"{report.format} import" + (" (dry run: nothing written)" if report.dry_run else "")
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("records", justify="right")
    for name, count in report.counts().items():
        label = f"would be {name}" if report.dry_run and name not in ("rejected",) else name
        table.add_row(label, str(count))
    table.add_row("total in file", str(report.records))
    table.add_row("rate", f"{report.rate():.0f} records/s")
    console.print(table)
    if report.dry_run:
        for outcome, ids in (
            ("create", report.created),
            ("update", report.updated),
            ("mark stale", report.stale),
        ):
            for id_ in ids:
                console.print(f"would {outcome}: HealthcareService/{id_}")
    for item in report.rejected + report.failed:  # one line each: easy to grep and to read
        source = f" source id {item['sourceId']}:" if item["sourceId"] else ""
        console.print(
            f"rejected {item['pointer']}{source} {item['reason']}", markup=False, soft_wrap=True
        )
