"""The replay report: per queue and per tier, the recorded policy beside the new one.

Figures, for each policy's replay of the same recording:

* **service level** — answered within the threshold ÷ (answered + abandoned), as the engines
  count it (`QueueStats.service_level`); one threshold for both columns (the recorded
  policy's), so the comparison is of routing, not of a moved goal post;
* **ASA** — average speed of answer: mean wait from arrival to the accept, of the answered;
* **abandons** — customers who left unanswered (`replay.simulate` says who does);
* **longest wait** — the longest a customer waited for an answer or until they left;
* **occupancy** — the time agents held at least one task (offered, assigned or in wrap-up)
  ÷ their logged-in time; per queue, of the agents with capacity on that channel, counting
  time they held work of that channel.

Per tier, "answered", ASA and service level count the tasks that tier answered (its share of
the answers), occupancy the tier's agents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from queues.policy import CHANNELS, TIERS
from replay.simulate import Outcome

FIGURES = ("answered", "abandoned", "service_level", "asa_s", "longest_wait_s", "occupancy")


def figures(out: Outcome, threshold_ms: int) -> dict[str, Any]:
    """{"queues": {channel: figures}, "tiers": {tier: figures}, "total": figures}."""
    queues = {c: _figures(out, threshold_ms, channel=c) for c in CHANNELS}
    tiers = {t: _figures(out, threshold_ms, tier=t) for t in TIERS}
    return {
        "queues": {c: f for c, f in queues.items() if f["arrived"]},
        "tiers": {t: f for t, f in tiers.items() if f["agents"]},
        "total": _figures(out, threshold_ms),
    }


def _figures(
    out: Outcome, threshold_ms: int, *, channel: str | None = None, tier: str | None = None
) -> dict[str, Any]:
    answered: list[int] = []
    abandoned: list[int] = []
    arrived = 0
    for ch, ans, aban, by in out.waits.values():
        if channel is not None and ch != channel:
            continue
        if tier is None:
            arrived += 1
        if ans is not None and (tier is None or by == tier):
            answered.append(ans)
        elif aban is not None and tier is None:
            abandoned.append(aban)
    within = sum(1 for w in answered if w <= threshold_ms)
    handled = len(answered) + len(abandoned)
    agents = [
        a
        for a in out.logged_in_ms
        if (tier is None or out.tier.get(a) == tier)
        and (channel is None or out.cap.get(a, {}).get(channel, 0) > 0)
    ]
    key = channel or "*"
    staffed = sum(out.logged_in_ms[a] for a in agents)
    busy = sum(out.busy_ms.get(a, {}).get(key, 0) for a in agents)
    return {
        "arrived": arrived,
        "answered": len(answered),
        "abandoned": len(abandoned) if tier is None else None,  # nobody's, per tier
        "service_level": round(within / handled, 4) if handled else None,
        "asa_s": round(sum(answered) / len(answered) / 1000, 3) if answered else None,
        "longest_wait_s": round(max(answered + abandoned, default=0) / 1000, 3),
        "occupancy": round(busy / staffed, 4) if staffed else None,
        "agents": len(agents),
    }


def compare(recorded: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Side by side: for each row (queue, tier, total) `{"recorded": …, "new": …}`."""
    out: dict[str, Any] = {}
    for section in ("queues", "tiers"):
        names = list(dict.fromkeys([*recorded[section], *new[section]]))
        out[section] = {
            n: {"recorded": recorded[section].get(n), "new": new[section].get(n)} for n in names
        }
    out["total"] = {"recorded": recorded["total"], "new": new["total"]}
    return out


def _cell(figs: Mapping[str, Any] | None, name: str) -> str:
    if not figs:
        return "-"
    value = figs.get(name)
    if value is None:
        return "-"
    if name in ("service_level", "occupancy"):
        return f"{value * 100:.1f} %"
    if name.endswith("_s"):
        return f"{value:.1f} s"
    return str(value)


HEAD = {
    "answered": "answered",
    "abandoned": "abandons",
    "service_level": "service level",
    "asa_s": "ASA",
    "longest_wait_s": "longest wait",
    "occupancy": "occupancy",
}


def table(side: Mapping[str, Any]) -> str:
    """A markdown table: one row per queue, tier and the total; recorded → new per figure."""
    lines = [
        "| row | " + " | ".join(HEAD[f] for f in FIGURES) + " |",
        "|---|" + "---|" * len(FIGURES),
    ]
    rows = [(f"queue {n}", v) for n, v in side["queues"].items()]
    rows += [(f"tier {n}", v) for n, v in side["tiers"].items()]
    rows.append(("total", side["total"]))
    for name, pair in rows:
        cells = [f"{_cell(pair['recorded'], f)} → {_cell(pair['new'], f)}" for f in FIGURES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


def write_png(side: Mapping[str, Any], path: str) -> str:
    """Service level and ASA per queue, recorded beside new; says why when there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "PNG skipped: matplotlib is not installed (pip install -e '.[plot]')."
    names = [c for c in CHANNELS if c in side["queues"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, figure, label in (
        (axes[0], "service_level", "service level"),
        (axes[1], "asa_s", "ASA s"),
    ):
        for i, which in enumerate(("recorded", "new")):
            values = [(side["queues"][n][which] or {}).get(figure) or 0 for n in names]
            ax.bar([x + i * 0.4 for x in range(len(names))], values, width=0.4, label=which)
        ax.set_xticks([x + 0.2 for x in range(len(names))], names)
        ax.set_title(label)
        ax.legend(fontsize=8)
    fig.suptitle("omniroute replay: recorded policy vs new")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"PNG: {path}"
