"""The ``fhir-server`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from fhir_server.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        store=args.store,
        data_dir=args.data_dir,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        base_path=getattr(args, "base_path", None),
        public_url=getattr(args, "public_url", None),
    )


def _add_store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        help="store URL: sqlite:///path/fhir.db (default: "
        "<data dir>/fhir.db) or mongodb://host/db; env FHIR_STORE",
    )
    parser.add_argument(
        "--data-dir",
        type=lambda p: __import__("pathlib").Path(p).resolve(),
        help="folder for the embedded store (default ./data; env FHIR_DATA_DIR)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fhir-server", description="FHIR R4 server for Born in Belgium Professionals"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _add_store_flags(serve)
    serve.add_argument("--host", help="bind address (default 127.0.0.1; env FHIR_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080; env FHIR_PORT)")
    serve.add_argument("--base-path", help="path of the FHIR API (default /fhir)")
    serve.add_argument("--public-url", help="absolute FHIR base URL as clients see it")
    serve.add_argument(
        "--no-demo", action="store_true", help="do not load the demo content into an empty store"
    )
    serve.add_argument("--log-level", default="info")

    load = sub.add_parser("load", help="load a Bundle (transaction/batch) or NDJSON file")
    _add_store_flags(load)
    load.add_argument("file")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = _settings(args)
    if args.command == "serve":
        return _serve(settings, load_demo=not args.no_demo, log_level=args.log_level)
    if args.command == "load":
        return asyncio.run(_load(settings, args.file))
    return 2


def _serve(settings: Settings, load_demo: bool, log_level: str) -> int:
    import uvicorn

    from fhir_server.app import create_app

    app = create_app(settings, load_demo=load_demo)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
    )
    return 0


async def _load(settings: Settings, path: str) -> int:
    from fhir_server.app import create_app
    from fhir_server.demo import load_file

    app = create_app(settings)
    await app.startup()
    try:
        count = await load_file(app.service, path)
    finally:
        await app.shutdown()
    print(f"loaded {count} resources from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
