"""The probes: liveness, readiness and the full component report (no authentication; the
Host is checked against ALLOWED_HOSTS by mamba_site.middleware, as for every route)."""

from typing import Any

from django.http import HttpRequest, JsonResponse

from health.checks import RestingTargets
from health.reports import full_report, full_report_body, readiness_report
from mamba_site.errors import allow_methods, json_errors

# Probe answers describe this instant; no proxy or client may reuse one.
NO_STORE = {"Cache-Control": "no-store"}


@allow_methods("GET", "HEAD")
async def live(request: HttpRequest) -> JsonResponse:
    # Touches nothing: a dependency's outage must never restart the process.
    return JsonResponse({"status": "alive"}, headers=NO_STORE)


@allow_methods("GET", "HEAD")
@json_errors
async def ready(request: HttpRequest) -> JsonResponse:
    report = await readiness_report()
    body: dict[str, Any] = {"status": str(report.status), "checks": report.checks_dict()}
    if report.failing:
        body["failing"] = report.failing
    return _quiet(JsonResponse(body, status=report.http_status, headers=NO_STORE))


@allow_methods("GET", "HEAD")
@json_errors
async def health(request: HttpRequest, resting: RestingTargets | None = None) -> JsonResponse:
    # `resting`: the providers' resting targets, handed in by mamba_site/urls.py.
    report = await full_report(resting=resting)
    body = full_report_body(report)
    return _quiet(JsonResponse(body, status=report.http_status, headers=NO_STORE))


def _quiet(response: JsonResponse) -> JsonResponse:
    # A failing probe repeats every few seconds; health/reports.py logs each change of state
    # once, so Django's ERROR line per 503 ("Service Unavailable") is turned off.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
