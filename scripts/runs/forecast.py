"""What a run was expected to take and cost, recorded before it starts, and how far off it was.

At the start of an activation or drill, :func:`make_forecast` predicts every in-scope server's
time to available from the client's previous drill (:mod:`drctl.plan.rto`) and prices a day of
activation and a month of the backup space (:mod:`drctl.stack.cost`). The run summary keeps that
document as ``forecast``; the report shows it next to the measured figures with the error
(:func:`prediction_rows`). A forecast that cannot be made (no price table, the repository not
listable) leaves a note and never stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drctl.errors import DrctlError

log = logging.getLogger(__name__)


def make_forecast(
    cfg: Any, scope: Sequence[str], previous_runs: Sequence[Any], storage: Any
) -> dict[str, Any]:
    """The forecast of a run of stack ``cfg`` over ``scope`` (server names): ``prediction`` (the
    RtoPrediction as a dict), ``cost`` (the CostEstimate of one day, or None) and ``notes``."""
    from drctl.plan.rto import last_measurement, predict
    from drctl.stack.cost import estimate, parse_prices, stored_bytes

    notes: list[str] = []
    prediction = predict(cfg.plan, scope, last_measurement(previous_runs, cfg.plan)).as_dict()
    cost = None
    try:
        prices = parse_prices(cfg.settings.prices, where=str(cfg.path))
        stored = stored_bytes(storage)
        cost = estimate(
            cfg.plan, cfg.settings, prices, days=1, stored_bytes=stored, where=str(cfg.path)
        ).as_dict()
    except DrctlError as e:
        notes.append(f"no cost estimate: {e.message}")
    return {"prediction": prediction, "cost": cost, "notes": notes}


@dataclass(frozen=True)
class PredictionRow:
    server: str
    predicted_s: float
    measured_s: float | None  # None: the server never became available
    error_pct: float | None  # (predicted - measured) / measured


def _error(predicted: float, measured: float | None) -> float | None:
    if measured is None or measured <= 0:
        return None
    return (predicted - measured) / measured * 100


def prediction_rows(forecast: Mapping[str, Any], servers: Sequence[Any]) -> list[PredictionRow]:
    """One row per server of the run that the forecast predicted, then ``(all)`` for the last one
    available: the prediction, the measured time to available, the error in percent."""
    predicted = {
        p["server"]: float(p["predicted_s"]) for p in forecast.get("prediction", {}).get("servers", [])
    }
    rows = [
        PredictionRow(
            s.name, predicted[s.name], s.rto_achieved_s, _error(predicted[s.name], s.rto_achieved_s)
        )
        for s in servers
        if s.name in predicted
    ]
    measured = [r.measured_s for r in rows if r.measured_s is not None]
    if rows:
        last_predicted = max(r.predicted_s for r in rows)
        last = max(measured) if len(measured) == len(rows) else None
        rows.append(PredictionRow("(last server)", last_predicted, last, _error(last_predicted, last)))
    return rows
