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
        auth="open" if getattr(args, "insecure_open", False) else None,
        clients_file=getattr(args, "clients", None),
        idp_issuer=getattr(args, "idp_issuer", None),
        idp_jwks_url=getattr(args, "idp_jwks_url", None),
        idp_jwks_file=getattr(args, "idp_jwks_file", None),
        idp_audience=getattr(args, "idp_audience", None),
    )


def _add_address_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default 127.0.0.1; env FHIR_HOST)")
    parser.add_argument("--port", type=int, help="port (default 8080; env FHIR_PORT)")
    parser.add_argument("--base-path", help="path of the FHIR API (default /fhir)")
    parser.add_argument("--public-url", help="absolute FHIR base URL as clients see it")


def _add_security_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure-open",
        action="store_true",
        help="DEVELOPMENT ONLY: no authentication, no authorization, no audit (env FHIR_AUTH=open)",
    )
    parser.add_argument(
        "--clients", help="JSON/TOML file of SMART client registrations and local users"
    )
    parser.add_argument("--idp-issuer", help="issuer of an external identity provider (eHealth)")
    parser.add_argument("--idp-jwks-url", help="JWKS URL of the external identity provider")
    parser.add_argument("--idp-jwks-file", help="JWKS file of the external identity provider")
    parser.add_argument("--idp-audience", help="aud value required in external tokens")


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
    _add_address_flags(serve)
    _add_security_flags(serve)
    serve.add_argument(
        "--no-demo", action="store_true", help="do not load the demo content into an empty store"
    )
    serve.add_argument("--log-level", default="info")

    load = sub.add_parser("load", help="load a Bundle (transaction/batch) or NDJSON file")
    _add_store_flags(load)
    load.add_argument("file")

    from fhir_server.socialmap.importer.cli import add_parser as add_import_parser

    add_import_parser(sub, _add_store_flags)

    token = sub.add_parser(
        "demo-token",
        help="print an access token for local use (signed with this server's key)",
        description="Print a bearer token for the server using the same --data-dir and "
        "--public-url (or --host/--port). Role A is the demo midwife, role B the demo social "
        "worker (both in the demo content); with --patient the token has that patient context.",
    )
    _add_store_flags(token)
    _add_address_flags(token)
    token.add_argument("--role", choices=("A", "B"), default="A")
    token.add_argument("--patient", help="patient id: a patient-context token (patient/ scopes)")
    token.add_argument(
        "--scope", help="scopes (default user/*.cruds, or patient/*.cruds with --patient)"
    )
    token.add_argument("--practitioner", help="Practitioner id of the user (default: demo user)")
    token.add_argument("--organization", help="Organization id of the user")
    token.add_argument("--admin", action="store_true", help="also an administrator (audit reader)")
    token.add_argument("--hours", type=float, default=12, help="lifetime in hours (default 12)")

    secret = sub.add_parser(
        "hash-secret", help="hash a client secret or password for the --clients file"
    )
    secret.add_argument("secret")

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
    if args.command == "import":
        from fhir_server.socialmap.importer.cli import run as run_import

        return run_import(settings, args)
    if args.command == "demo-token":
        return _demo_token(settings, args)
    if args.command == "hash-secret":
        from fhir_server.security.authserver import hash_secret

        print(hash_secret(args.secret))
        return 0
    return 2


DEMO_USERS = {
    "A": ("Practitioner/demo-midwife", "Organization/demo-hospital", "persmidwife", "An Peeters"),
    "B": (
        "Practitioner/demo-social-worker",
        "Organization/demo-cpas",
        "perssocialworker",
        "Sarah Dubois",
    ),
}


def _demo_token(settings: Settings, args: argparse.Namespace) -> int:
    from fhir_server.security import signing_key_path
    from fhir_server.security.authserver import access_claims
    from fhir_server.security.tokens import SigningKey

    practitioner, organization, profession, name = DEMO_USERS[args.role]
    if args.practitioner:
        practitioner = f"Practitioner/{args.practitioner}"
    if args.organization:
        organization = f"Organization/{args.organization}"
    scope = args.scope or ("patient/*.cruds" if args.patient else "user/*.cruds")
    claims = access_claims(
        settings,
        subject=f"demo:{practitioner}",
        client_id="fhir-server-demo-token",
        scope=f"{scope} openid fhirUser",
        lifetime=int(args.hours * 3600),
        role=args.role,
        admin=args.admin,
        practitioner=practitioner,
        organization=organization,
        professions=[profession],
        name=f"{name} (demo)",
        patient=args.patient,
        source="demo",
    )
    key = SigningKey(signing_key_path(settings))
    token = key.sign(claims, typ="at+jwt")
    print(token)
    print(
        f"\n# Role {args.role} ({name}), scopes: {scope}, valid {args.hours:g} h, for "
        f"{settings.public_url}\n# curl -H 'Authorization: Bearer <token>' "
        f"{settings.public_url}/Patient",
        file=sys.stderr,
    )
    return 0


def _serve(settings: Settings, load_demo: bool, log_level: str) -> int:
    import uvicorn

    from fhir_server.app import create_app

    app = create_app(settings, load_demo=load_demo)
    app.startup_hooks.append(_freeze_heap)
    if settings.auth == "open":
        print(
            "\n*** WARNING: --insecure-open: authentication is DISABLED. Anyone who can reach "
            "this server can read and change every record. Development only. ***\n",
            file=sys.stderr,
        )
    else:
        flags = f" --data-dir {settings.data_dir}"
        if settings.public_url != f"http://{settings.host}:{settings.port}/fhir":
            flags += f" --public-url {settings.public_url}"
        elif settings.port != 8080 or settings.host != "127.0.0.1":
            flags += f" --host {settings.host} --port {settings.port}"
        print(
            f"\nAccess tokens are required. A token for local use (demo midwife, Role A):\n"
            f"    {_self_command()} demo-token{flags}\n"
            f"  (--role B: demo social worker; --patient ID: a patient-context token)\n"
            f"SMART discovery: {settings.public_url}/.well-known/smart-configuration\n",
            file=sys.stderr,
        )
    from fhir_server.api import limits

    # requests whose head exceeds the bound are refused (431) before they are buffered whole
    limits.BoundedHttpToolsProtocol.max_head_bytes = settings.max_header_bytes
    limits.on_refused = app.audit_oversized
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        http=limits.BoundedHttpToolsProtocol,
    )
    return 0


def _self_command() -> str:
    """How this program was started, so that printed hints can be pasted as they are."""
    import shlex
    from pathlib import Path

    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("fhir-server")
    if program.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m fhir_server"
    return shlex.quote(str(program))


GC_YOUNG_THRESHOLD = 50_000


async def _freeze_heap() -> None:
    """After start-up, move the long-lived heap (R4 model, search registry, terminology) out of
    the garbage collector's reach: every request allocates small objects, and each collection
    would otherwise walk millions of objects that never die (this roughly halves the cost of a
    request that allocates a lot, e.g. one that writes an AuditEvent).

    The first generation is then collected every 50,000 net allocations instead of 700: each
    collection walks everything young that is still alive (the requests in flight), so frequent
    ones cost about 5 µs per create, and they make the full collections come sooner too. Cyclic
    garbage (exceptions with tracebacks) still goes within a few thousand requests. Measured
    under create load: p99 latency 27-31 ms -> 15-16 ms (docs/benchmarks.md)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


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
