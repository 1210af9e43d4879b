"""Closed-loop referrals: the enforced Task workflow, access that follows the referral, and the
programme's evaluation (docs/referrals.md).

``install(app)`` (listed in ``fhir_server/plugins.py``) plugs it in:

* ``ReferralHook`` joins the write hooks: the state machine of ``mappings/referral-workflow.json``
  on every write of a referral Task (whatever profile it claims), who may set which status, the
  statusReason and outcome rules, and the ServiceRequest's status following its Task, in the same
  unit of work (workflow.py);
* with security on, ``ReferralGrants`` joins the care-relationship index as a grant provider:
  what a referral shares with the receiving organisation, no more (access.py);
* ``$evaluate-measure`` on the shipped Measure ``bib-referral-outcomes`` (report.py), listed in
  ``/metadata``; the Measure and its content come from ``content/referrals/``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.referrals.report import DEFINITION, Report
from fhir_server.referrals.workflow import ReferralHook


def install(app: Any) -> None:
    svc = app.service
    svc.write_hooks.append(ReferralHook(svc))
    security = getattr(app, "security", None)
    if security is not None:
        from fhir_server.referrals.access import ReferralGrants

        security.relationships.add_provider(ReferralGrants(svc))
    svc.shipped.add_library("referrals", "referrals")
    report = Report(svc)
    app.fhir.operations["evaluate-measure"] = report.operation

    svc.capability_operations.append(
        {"name": "evaluate-measure", "definition": DEFINITION, "types": ("Measure",)}
    )
