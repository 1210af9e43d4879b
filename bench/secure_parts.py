"""The parts of the secure path, µs each, for whichever ``fhir_server`` is imported (issue 18).

Run it for this checkout and for an older one in the same minute to compare (the older one
through ``PYTHONPATH=<its checkout>``); ``secure_breakdown.py`` measures whole requests.

- ``audit event``: build one AuditEvent of a read and its index rows (``AuditLog._version``);
- ``guard read``: ``authorize`` a Role A read of the woman's Patient (the same token again);
- ``labels per write``: the label policy as a create uses it (the guard, then the label hook);
- ``provenance rows``: index rows of the Provenance of an Observation create;
- ``observation rows``: index rows of the bench Observation (generic extractor).

    python bench/secure_parts.py [--repeat 5000]
"""

from __future__ import annotations

import argparse
import copy
import inspect
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import secure_breakdown as sb  # noqa: E402


async def main(repeat: int) -> None:
    from fhir_server.security.audit import ProvenanceHook
    from fhir_server.security.principal import SecureContext
    from fhir_server.service.core import Access
    from fhir_server.service.versioning import stamp_meta
    from fhir_server.store.protocol import StoredVersion

    def per_call(fn, n: int = repeat) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.thread_time()
            for _ in range(n):
                fn()
            best = min(best, (time.thread_time() - started) / n * 1e6)
        return best

    async def per_call_async(fn, n: int = repeat) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.thread_time()
            for _ in range(n):
                await fn()
            best = min(best, (time.thread_time() - started) / n * 1e6)
        return best

    with tempfile.TemporaryDirectory(prefix="bench-parts-") as data:
        app, token = await sb.build(Path(data), "secure")
        svc = app.service
        audit = app.security.audit
        entries: list[tuple] = []
        append = audit._append

        def capture(entry: tuple):
            entries.append(entry)
            return append(entry)

        audit._append = capture
        scope, _, _ = sb.request_for("read", token)
        await sb.call(app, scope)
        entry = entries[-1]
        if "entry" in inspect.signature(audit._version).parameters:
            results = {"audit event": per_call(lambda: audit._version(entry))}
        else:
            results = {"audit event": per_call(lambda: audit._version(audit.build(entry)))}

        principal = app.security.verifier.cached(token)
        current = await svc.store.current("Patient", "bench-1")
        ctx = SecureContext(base_url=svc.settings.public_url, principal=principal)
        access = Access("read", "Patient", "bench-1", current=current)
        results["guard read"] = await per_call_async(lambda: svc.authorize(ctx, access))

        labeller = app.security.labeller
        observation = sb.observation()
        observation["id"] = "x"
        copies = [copy.deepcopy(observation) for _ in range(repeat * 3 + 3)]
        pool = iter(copies)

        async def labels_per_write() -> None:
            resource = next(pool)
            await labeller.labels_for(resource)
            await labeller.apply(resource)

        results["labels per write"] = await per_call_async(labels_per_write)

        hook = next(h for h in svc.write_hooks if isinstance(h, ProvenanceHook))
        built: list[tuple[dict, object]] = []

        async def spy(ctx, uow, resource, current, method, **kw):
            built.append((resource, kw.get("indexer")))

        real = svc.store_version
        svc.store_version = spy
        written = StoredVersion("Observation", "o1", 1, 1_764_000_000_000_000, False, "POST", b"")
        await hook.after(SecureContext(base_url="x", principal=principal), None, written, None)
        svc.store_version = real
        provenance, indexer = built[0]
        stamp_meta(provenance, 1, 1_764_000_000_001_000)
        if indexer is not None:
            results["provenance rows"] = per_call(
                lambda: indexer(provenance, 1_764_000_000_001_000)
            )
        else:
            results["provenance rows"] = per_call(
                lambda: svc.extractor.extract(provenance, last_updated=1_764_000_000_001_000)
            )
        stamp_meta(observation, 1, 1_764_000_000_001_000)
        results["observation rows"] = per_call(
            lambda: svc.extractor.extract(observation, last_updated=1_764_000_000_001_000),
            max(repeat // 5, 100),
        )
        await app.shutdown()
    for name, value in results.items():
        print(f"{name:<20}{value:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5000)
    import uvloop

    uvloop.run(main(parser.parse_args().repeat))
