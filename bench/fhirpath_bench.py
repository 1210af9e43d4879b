"""FHIRPath speed: the new engine against the two compiled evaluators it replaced, in one run.

The references are copies of the former modules in ``bench/reference/`` (the typed compiler of
search values and patch, ``old_compiler.py``; the invariant fast path, ``old_fastpath.py``; the
fhirpathpy fallback, ``old_fhirpath.py``). Measures, as the best of ``--repeat`` rounds:

1. search values: every R4 SearchParameter expression applicable to each resource of the demo
   content, the be-core examples and the suite inputs (the server's extraction path:
   ``compile_expression(...)(resource)``), old (compiled subset, fhirpathpy for the rest) vs new;
2. the same on only the expressions the old compiled subset answered (its own ground);
3. the suite's expressions on its inputs that the old invariant fast path answered, through the
   invariant interface (boolean), old vs new;
4. the whole suite through ``evaluate``, new vs fhirpathpy (the former full evaluator).

    python bench/fhirpath_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reference import old_fastpath, old_fhirpath  # noqa: E402
from bench.reference.old_compiler import Unsupported, compile_path  # noqa: E402
from fhir_server import fhirpath  # noqa: E402
from fhir_server.definitions import load_r4  # noqa: E402
from fhir_server.model.structure import r4_model  # noqa: E402
from fhir_server.search.registry import split_union_for_type  # noqa: E402
from tests.fhirpath.suite import cases, load_input  # noqa: E402


def resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for item in files("fhir_server.demo").iterdir():
        if item.name.endswith(".json"):
            data = json.loads(item.read_text(), parse_float=Decimal)
            found.extend(e["resource"] for e in data.get("entry", ()) if "resource" in e)
    for path in sorted((ROOT / "tests" / "data" / "be-core").glob("*.json")):
        found.append(json.loads(path.read_text(), parse_float=Decimal))
    for path in sorted((ROOT / "tests" / "fhirpath" / "suite" / "inputs").glob("*.json")):
        found.append(json.loads(path.read_text(), parse_float=Decimal))
    return found


def best(fn: Callable[[], Any], repeat: int) -> float:
    """The best of ``repeat`` rounds (garbage collection off while timing, as the served process
    tunes it)."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    finally:
        gc.enable()
    return min(times)


def compare(old: Callable[[], Any], new: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best times of ``old`` and ``new``, measured in alternating rounds (the machine's speed
    drifts)."""
    old_times, new_times = [], []
    for _ in range(repeat):
        old_times.append(best(old, 1))
        new_times.append(best(new, 1))
    return min(old_times), min(new_times)


def search_cases(
    model: Any,
) -> tuple[list[tuple[Any, Any, dict]], list[tuple[Any, Any, dict]]]:
    everything, subset = [], []
    definitions = [d for d in load_r4("search-parameters") if d.get("expression")]
    for resource in resources():
        rtype = resource.get("resourceType")
        for definition in definitions:
            bases = definition.get("base", ())
            if rtype not in bases and "Resource" not in bases and "DomainResource" not in bases:
                continue
            own = split_union_for_type(definition["expression"], rtype, model)
            if not own or definition["code"] == "_id":
                continue
            old = old_fhirpath.compile_expression(own, model)
            new = fhirpath.compile_expression(own, model)
            everything.append((old, new, resource))
            if isinstance(old, old_fhirpath.CompiledPath):
                subset.append((old, new, resource))
    return everything, subset


def run_all(pairs: list[tuple[Any, Any, dict]], which: int) -> None:
    for pair in pairs:
        with contextlib.suppress(Exception):  # extraction skips a failing parameter as well
            pair[which](pair[2])


def invariant_cases() -> list[tuple[Any, Any, Any, str]]:
    from fhir_server.validation.invariants import Invariant

    out = []
    for case in cases():
        resource = load_input(case.inputfile)
        if resource is None or case.invalid:
            continue
        try:
            fast = old_fastpath.compile_invariant(case.expression)
            env = {
                "resource": resource,
                "root": resource,
                "type": resource["resourceType"],
                "this": resource,
            }
            fast([resource], env)
        except (old_fastpath.Unsupported, old_fastpath.Fallback):
            continue
        except Exception:
            continue
        invariant = Invariant("bench", "error", "fails", case.expression)
        out.append((fast, invariant, resource, resource["resourceType"]))
    return out


def choice_casts(model: Any, repeat: int) -> None:
    """The R4 search expressions with a choice cast (``value.ofType(Quantity)``, ``value as
    Quantity``, ``.as()``) on the resources they apply to: the general path (every choice key
    walked, each item's type tested) against the fast path (the one key ``valueQuantity``),
    same engine, same run, alternating rounds; the results must be identical."""
    from fhir_server.fhirpath import CompiledExpression
    from fhir_server.fhirpath.engine import NO_ENV, Compiler
    from fhir_server.fhirpath.parser import parse

    compilers = (Compiler(model, choice_casts=False), Compiler(model))
    pairs: list[tuple[Any, Any, dict]] = []
    definitions = [d for d in load_r4("search-parameters") if d.get("expression")]
    for resource in resources():
        rtype = resource.get("resourceType")
        for definition in definitions:
            bases = definition.get("base", ())
            if rtype not in bases and "Resource" not in bases and "DomainResource" not in bases:
                continue
            own = split_union_for_type(definition["expression"], rtype, model)
            if not own or not any(k in own for k in ("ofType(", ".as(", " as ")):
                continue
            compiled = []
            try:
                for compiler in compilers:
                    fn, _ = compiler.compile(parse(own), compiler.stype(rtype))
                    compiled.append(CompiledExpression(own, fn, model, rtype))
            except Exception:  # an expression that does not apply to the type
                continue
            pairs.append((compiled[0], compiled[1], resource))

    def run(which: int) -> list:
        out = []
        for pair in pairs:
            try:
                out.append(pair[which].nodes(pair[2], NO_ENV))
            except Exception as exc:
                out.append(type(exc).__name__)
        return out

    general, fast = run(0), run(1)
    same = all(
        a == b
        if isinstance(a, str)
        else [(n.value, n.type) for n in a] == [(n.value, n.type) for n in b]
        for a, b in zip(general, fast, strict=True)
    )
    old, new = compare(lambda: run(0), lambda: run(1), repeat)
    print(
        f"choice casts in search values: {len(pairs)} evaluations; general path "
        f"{len(pairs) / old:,.0f}/s, fast path {len(pairs) / new:,.0f}/s "
        f"(fast/general {old / new:.2f}x); same results: {same}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    model = r4_model()

    everything, subset = search_cases(model)
    for label, pairs in (
        ("all R4 search expressions", everything),
        ("old compiled subset only", subset),
    ):
        run_all(pairs, 0)
        run_all(pairs, 1)
        old, new = compare(
            lambda pairs=pairs: run_all(pairs, 0),
            lambda pairs=pairs: run_all(pairs, 1),
            args.repeat,
        )
        print(
            f"search values, {label}: {len(pairs)} evaluations; "
            f"old {len(pairs) / old:,.0f}/s, new {len(pairs) / new:,.0f}/s "
            f"(new/old {old / new:.2f}x)"
        )

    choice_casts(model, args.repeat)

    invariants = invariant_cases()

    def old_invariants() -> None:
        # what the former Invariant.evaluate did around the fast path
        for fast, _, resource, rtype in invariants:
            env = {"resource": resource, "root": resource, "type": rtype, "this": resource}
            try:
                result = fast([resource], env)
            except old_fastpath.Fallback:
                continue
            _ = None if result and all(item is True for item in result) else "fails"

    def new_invariants() -> None:
        for _, invariant, resource, rtype in invariants:
            invariant.evaluate(resource, rtype, None, resource, resource)

    new_invariants()
    old, new = compare(old_invariants, new_invariants, args.repeat)
    print(
        f"invariants, suite expressions the old fast path answered: {len(invariants)}; "
        f"old {len(invariants) / old:,.0f}/s, new {len(invariants) / new:,.0f}/s "
        f"(new/old {old / new:.2f}x)"
    )

    suite = []
    for case in cases():
        resource = load_input(case.inputfile)
        suite.append((case.expression, resource))

    def new_suite() -> None:
        for expression, resource in suite:
            with contextlib.suppress(fhirpath.FhirPathError):
                fhirpath.evaluate(expression, resource if resource is not None else [])

    def old_suite() -> None:
        for expression, resource in suite:
            with contextlib.suppress(Exception):
                old_fhirpath.evaluate(expression, resource or {})

    new_suite()
    old_suite()
    new = best(new_suite, args.repeat)
    old = best(old_suite, max(1, args.repeat // 2))
    print(
        f"whole suite through evaluate(): {len(suite)} expressions; fhirpathpy "
        f"{len(suite) / old:,.0f}/s, new {len(suite) / new:,.0f}/s (new/old {old / new:.2f}x)"
    )
    print("(machine shared with other work: compare the ratios)")
    _ = Unsupported, compile_path
    return 0


if __name__ == "__main__":
    sys.exit(main())
