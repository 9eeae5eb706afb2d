"""What a job is: one declaration per Novita model (``jobs/kling_*.py``, one module per
family) on the written contract of ``jobs/contract.py``. ``MODELS`` is the registry:
adding a model is declaring it in its family's module and listing it here.
"""

import json
import math
from collections.abc import Mapping
from typing import Any

from jobs import kling_o1, kling_v21, kling_v26, kling_v30
from jobs.contract import Model, Request
from jobs.problems import FieldProblem

DEFAULT_MODEL = kling_v26.NAME  # what a manifest that names no model gets
MODELS: dict[str, Model] = {
    model.name: model
    for model in (kling_v26.MODEL, *kling_v21.MODELS, *kling_o1.MODELS, *kling_v30.MODELS)
}


def model_named(name: str | None) -> Model:
    """The model of that name (the default when None); KeyError for an unknown one."""
    return MODELS[name or DEFAULT_MODEL]


def model_of(request_json: str) -> str:
    """The model a ledger's request belongs to (the seed model's carry no name)."""
    name = json.loads(request_json).get("model")
    return name if isinstance(name, str) else DEFAULT_MODEL


def request_from_json(text: str) -> Request:
    """A request as the ledger keeps it; one without a ``model`` key is the seed model's
    (every run folder from before models had names)."""
    data = json.loads(text)
    model = model_named(data.pop("model", None))
    values = {}
    for spec in model.fields:
        value = data.get(spec.name, spec.default)
        if isinstance(value, list):
            value = tuple(dict(v) if isinstance(v, dict) else v for v in value)
        values[spec.name] = value
    return Request(model, values)


PriceTables = dict[str, dict[str, float]]


def price_tables(overrides: Mapping[str, Any]) -> tuple[PriceTables, list[FieldProblem]]:
    """Every model's USD per second by tier, with ``overrides`` applied: a bare tier
    (``sound: 0.12``) sets it on every model that has that tier; ``model.tier``, or a
    mapping under the model's name, on that model only. Estimates, all of them."""
    tables = {name: dict(model.prices) for name, model in MODELS.items()}
    problems: list[FieldProblem] = []
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and key in MODELS:
            flat.update({f"{key}.{tier}": usd for tier, usd in value.items()})
        else:
            flat[str(key)] = value
    for key, value in flat.items():
        model_name, _, tier = key.rpartition(".")
        if model_name not in MODELS:
            model_name, tier = "", key
        targets = [n for n, t in tables.items() if tier in t and model_name in ("", n)]
        if not targets:
            tiers = tables[model_name] if model_name else _all_tiers(tables)
            problems.append(
                FieldProblem(
                    f"prices.{key}", value, f"is not a price tier ({', '.join(sorted(tiers))})"
                )
            )
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < math.inf  # refuses nan too
        ):
            problems.append(
                FieldProblem(f"prices.{key}", value, "must be USD per second, e.g. 0.07")
            )
        else:
            for name in targets:
                tables[name][tier] = float(value)
    return tables, problems


def _all_tiers(tables: PriceTables) -> set[str]:
    return {tier for table in tables.values() for tier in table}


def model_as_json(model: Model) -> dict[str, Any]:
    """A model's declaration as plain data (``kling-batch models --json``)."""
    return {
        "name": model.name,
        "path": model.path,
        "kind": model.kind.value,
        "doc_url": model.doc_url,
        "fields": [
            {
                "name": f.name,
                "sent_as": f.sent_as,
                "wire": f.wire.value,
                "required": f.required,
                "default": list(f.default) if isinstance(f.default, tuple) else f.default,
                "choices": list(f.choices),
                "range": list(f.range) if f.range else None,
                "aliases": list(f.aliases),
            }
            for f in model.fields
        ],
        "prices_usd_per_second": dict(model.prices),
        "notes": model.notes,
    }
