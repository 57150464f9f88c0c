"""Admin pages: API keys and environments, and the audit log of every operator action.

API keys need `runs.add_apikey`, environments `runs.add_environment`, the audit log
`runs.view_auditentry` (the Admins group has all three). Each change is recorded with
dashboard.audit. A new key's secret appears once, in the response that created it, and
nowhere else: not in the database (only its SHA-256), the audit log, the logs or a cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control

from dashboard.audit import audit
from dashboard.permissions import MANAGE_ENVIRONMENTS, MANAGE_KEYS, VIEW_AUDIT, can, require
from dashboard.views import HtmxHttpRequest, current_environment
from runs.keyset import Keyset
from runs.models import ApiKey, AuditEntry, Environment, Run

AUDIT_PAGE_SIZE = 50
RUN_COUNT_CAP = 10_000  # environments page: "10,000+" instead of counting a million rows
DATA_SHOWN = 160  # characters of an audit entry's data shown in its row (all of it on hover)
KNOWN_ACTIONS = [
    "run.cancel",
    "run.reschedule",
    "run.replay",
    "run.trigger",
    "bulk.cancel",
    "bulk.replay",
    "apikey.create",
    "apikey.revoke",
    "environment.create",
]
KINDS = [("DEVELOPMENT", "Development"), ("STAGING", "Staging"), ("PRODUCTION", "Production")]


# --- API keys ------------------------------------------------------------------------------


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        strip=True,
        error_messages={"required": "Name the key after what will use it, e.g. “billing service”."},
    )


@require(MANAGE_KEYS)
def api_keys(request: HtmxHttpRequest, **kwargs: str) -> HttpResponse:
    """The environment's keys; POST creates one (its secret shown in this response only) or revokes one."""
    environment = current_environment(request)
    if request.method == "POST" and request.POST.get("action") == "revoke":
        return revoke_key(request, environment)
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    secret = ""
    if form.is_bound and form.is_valid():
        secret = create_key(request, environment, form.cleaned_data["name"])
        form = ApiKeyForm()
    context = {"environment": environment, "form": form, "secret": secret, **keys_context(environment)}
    template = "dashboard/partials/api_keys_panel.html" if request.htmx else "dashboard/api_keys.html"
    status = 422 if form.errors and not request.htmx else 200  # htmx swaps only 2xx responses
    response = render(request, template, context, status=status)
    if secret:
        patch_cache_control(response, no_store=True, private=True)
    return response


def keys_context(environment: Environment) -> dict[str, Any]:
    keys = ApiKey.objects.filter(environment=environment).order_by("revoked_at", "-created_at", "-id")
    return {"keys": list(keys), "settings_tab": "keys"}


def create_key(request: HttpRequest, environment: Environment, name: str) -> str:
    """A new key for the environment; returns the secret, which is never stored."""
    with transaction.atomic():
        key, secret = ApiKey.generate(environment, name=name)
        audit(
            request,
            "apikey.create",
            environment=environment,
            target=f"apikey_{key.pk}",
            data={"name": name, "hint": key.hint},
        )
    return secret


def revoke_key(request: HttpRequest, environment: Environment) -> HttpResponse:
    """Revoke the POSTed key (requests with it get 401 from then on); back to the list."""
    key_id = request.POST.get("key", "")
    now = timezone.now()
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=int(key_id)).first() if key_id.isdigit() else None
        if key is None:
            messages.error(request, f"No API key with id {key_id!r}: nothing was revoked.")
        elif key.revoked_at is not None:
            messages.info(request, f"“{key.name or key.hint}” was already revoked.")
        else:
            ApiKey.objects.filter(pk=key.pk).update(revoked_at=now)
            audit(
                request,
                "apikey.revoke",
                environment=key.environment,
                target=f"apikey_{key.pk}",
                reason=request.POST.get("reason", "").strip(),
                data={"name": key.name, "hint": key.hint},
            )
            messages.success(request, f"Revoked “{key.name or key.hint}”: requests with it now get 401.")
    slug = key.environment.slug if key is not None else environment.slug
    return HttpResponseRedirect(f"{reverse('api_keys')}?{urlencode({'env': slug})}", status=303)


# --- environments --------------------------------------------------------------------------

SLUG_RULE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")


class EnvironmentForm(forms.Form):
    slug = forms.CharField(
        max_length=32,
        strip=True,
        help_text="2 to 32 characters: lowercase letters, digits and hyphens, starting with a letter.",
    )
    name = forms.CharField(max_length=64, strip=True)
    kind = forms.ChoiceField(
        choices=KINDS,
        initial="STAGING",
        help_text="Development runs get a 10-minute default TTL; keys start tr_dev_, tr_stg_ or tr_prod_.",
    )

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        if not SLUG_RULE.match(slug):
            raise forms.ValidationError(
                f"“{slug}” is not a valid slug: use 2 to 32 lowercase letters, digits and hyphens, "
                "starting with a letter."
            )
        if Environment.objects.filter(slug__iexact=slug).exists():
            raise forms.ValidationError(f"An environment with the slug “{slug}” already exists.")
        return slug

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if Environment.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An environment named “{name}” already exists.")
        return name


@require(MANAGE_ENVIRONMENTS)
def environments(request: HtmxHttpRequest, **kwargs: str) -> HttpResponse:
    """Every environment with its run and key counts; POST creates one."""
    form = EnvironmentForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        environment = create_environment(request, form)
        if environment is not None:
            created = urlencode({"created": environment.slug})
            return HttpResponseRedirect(f"{reverse('environments')}?{created}", status=303)
    context = {
        "environment": current_environment(request),
        "form": form,
        "rows": environment_rows(),
        "created": request.GET.get("created", ""),
        "settings_tab": "environments",
        "perms_keys": can(request.user, MANAGE_KEYS),
    }
    return render(request, "dashboard/environments.html", context, status=422 if form.errors else 200)


def create_environment(request: HttpRequest, form: EnvironmentForm) -> Environment | None:
    """The new environment, or None (and an error on the form) if another request took its slug first."""
    fields = form.cleaned_data
    try:
        with transaction.atomic():
            environment = Environment.objects.create(slug=fields["slug"], name=fields["name"], kind=fields["kind"])
            audit(request, "environment.create", environment=environment, target=f"env_{environment.slug}", data=fields)
    except IntegrityError:
        form.add_error("slug", f"An environment with the slug “{fields['slug']}” already exists.")
        return None
    return environment


def environment_rows() -> list[dict[str, Any]]:
    """Each environment, its active and revoked key counts and a run count capped at RUN_COUNT_CAP."""
    environments = Environment.objects.annotate(
        active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)),
        revoked_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=False)),
    ).order_by("id")
    rows = []
    for environment in environments:
        # COUNT(*) over a LIMIT: reads at most RUN_COUNT_CAP + 1 index entries per environment.
        runs = Run.objects.filter(environment=environment).order_by()[: RUN_COUNT_CAP + 1].count()
        rows.append({"env": environment, "runs": min(runs, RUN_COUNT_CAP), "more": runs > RUN_COUNT_CAP})
    return rows


# --- audit log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    user: str = ""
    action: str = ""  # an action, or a family of them: "run.*"
    target: str = ""

    @classmethod
    def from_query(cls, query: Any) -> AuditFilters:
        # A NUL cannot be stored, so it matches nothing: shown as U+FFFD, which PostgreSQL can compare.
        values = {
            name: query.get(name, "").strip()[:128].replace("\x00", "\ufffd") for name in ("user", "action", "target")
        }
        return cls(**values)

    def q(self) -> Q:
        q = Q()
        if self.user:
            q &= Q(username=self.user)
        if self.action.endswith(".*"):
            q &= Q(action__startswith=self.action[:-1])
        elif self.action:
            q &= Q(action=self.action)
        if self.target:
            q &= Q(target=self.target)
        return q

    def params(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if value}


AUDIT = Keyset("at")  # newest first, by time then id


@require(VIEW_AUDIT)
def audit_log(request: HtmxHttpRequest, **kwargs: str) -> HttpResponse:
    """Every operator action, newest first, filtered by user, action and target; keyset pages."""
    filters = AuditFilters.from_query(request.GET)
    entries = AuditEntry.objects.filter(filters.q()).select_related("environment")
    after, before = AUDIT.decode(request.GET.get("after")), AUDIT.decode(request.GET.get("before"))
    # Bad cursors are ignored (the newest page); with both, `after` wins.
    page = AUDIT.page(entries, size=AUDIT_PAGE_SIZE, after=after, before=before if after is None else None, refill=True)
    context = {
        "environment": current_environment(request),
        "filters": filters,
        "page": page,
        "rows": [audit_row(entry) for entry in page.rows],
        "page_query": urlencode(filters.params()),
        "known_actions": KNOWN_ACTIONS,
    }
    return render(request, "dashboard/audit.html", context)


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    """An entry with a link to its target and its data as one short line."""
    text = json.dumps(entry.data, ensure_ascii=False, separators=(", ", ": "), default=str) if entry.data else ""
    return {
        "entry": entry,
        "link": target_link(entry.target, entry.environment),
        "data_text": text if len(text) <= DATA_SHOWN else text[: DATA_SHOWN - 1] + "…",
        "data_full": text[:4000] if len(text) > DATA_SHOWN else "",
    }


def target_link(target: str, environment: Environment | None) -> str:
    """The page of what an action was taken on, in its environment; "" if it has none."""
    env = {"env": environment.slug} if environment is not None else {}
    prefix, _, rest = target.partition("_")
    if not rest:
        return ""
    if prefix == "run":
        url = reverse("run", args=[target])
    elif prefix == "bulk":
        url = reverse("bulk", args=[target])
    elif prefix == "batch":
        url = reverse("batch", args=[target])
    elif prefix == "apikey":
        url = reverse("api_keys")
    elif prefix == "env":
        url, env = reverse("environments"), {}
    else:
        return ""
    return f"{url}?{urlencode(env)}" if env else url
