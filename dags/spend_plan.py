"""The media pipeline's spend plan: what a run will pay for, before it submits anything.

For each render of the run (the keyword arguments the mapped ``restyle`` task gets), the
provider's own decision (:func:`comet_provider.utils.pay_once.preview_render`, the one the
operator applies) says whether it would be submitted, resumed or reused from storage; it
gets every argument of the request, a style's own included (``model``, ``references``,
``seed``, ``ratio``... for the official route): the very request the task will send. The
plan counts them, adds up the seconds of video the submitted ones cover, and checks the
run's limits: over ``max_renders_per_run`` the run fails, over ``approval_over_renders``
it waits for a person's approval.

Plain functions apart from :func:`preview`; the DAG imports this module inside its tasks.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "DECISIONS",
    "approval_request",
    "build_plan",
    "cap_exceeded_message",
    "outcome_totals",
    "plan_table",
    "preview",
    "render_labels",
]

# The operator's result "decision" values, in the order the plan lists them.
DECISIONS = ("submit", "resume", "reuse_stored")


def render_labels(output_path: str) -> tuple[str, str, str]:
    """``(video, style, clip)`` of a render stored at ``.../<video>/<style>/<clip>.mp4``."""
    *_, video_id, style, name = output_path.rstrip("/").split("/")
    return video_id, style, name.rsplit(".", 1)[0]


def preview(renders: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the operator would decide for each render: ``{"decision", "reason", "runway_task_id"}``."""
    from comet_provider.utils.pay_once import preview_render

    accepted = set(inspect.signature(preview_render).parameters)
    decisions = []
    for kwargs in renders:
        # the restyle request only: connection, polling and timeout do not change what is paid for
        found = preview_render(**{k: v for k, v in kwargs.items() if k in accepted})
        decisions.append(
            {"decision": str(found.decision.value), "reason": found.reason, "runway_task_id": found.runway_task_id}
        )
    return decisions


def build_plan(
    renders: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    clip_seconds: Mapping[tuple[str, str], float],
    *,
    date: str,
    max_renders_per_run: int | None,
    approval_over_renders: int | None,
    force_render: bool = False,
) -> dict[str, Any]:
    """The plan: one row per render, totals per decision, seconds to submit, and the limits' verdict.

    ``clip_seconds`` maps ``(video, clip)`` to the clip's duration.
    """
    rows = []
    for kwargs, found in zip(renders, decisions, strict=True):
        video_id, style, clip = render_labels(kwargs["output_path"])
        rows.append(
            {
                "video_id": video_id,
                "style": style,
                "clip": clip,
                "seconds": round(float(clip_seconds.get((video_id, clip), 0.0)), 3),
                "decision": found["decision"],
                "reason": found.get("reason") or "",
                "runway_task_id": found.get("runway_task_id"),
                "output_path": kwargs["output_path"],
            }
        )
    totals: dict[str, Any] = {"renders": len(rows), **dict.fromkeys(DECISIONS, 0)}
    for row in rows:
        totals[row["decision"]] = totals.get(row["decision"], 0) + 1
    totals["seconds"] = round(float(sum(r["seconds"] for r in rows)), 3)
    totals["seconds_to_submit"] = round(float(sum(r["seconds"] for r in rows if r["decision"] == "submit")), 3)
    to_submit = totals["submit"]
    over_cap = max_renders_per_run is not None and to_submit > max_renders_per_run
    needs_approval = not over_cap and approval_over_renders is not None and to_submit > approval_over_renders
    return {
        "date": date,
        "force_render": force_render,
        "totals": totals,
        "limits": {"max_renders_per_run": max_renders_per_run, "approval_over_renders": approval_over_renders},
        "over_cap": over_cap,
        "approval_required": needs_approval,
        "renders": rows,
    }


def _summary(plan: Mapping[str, Any]) -> str:
    t = plan["totals"]
    return (
        f"{t['renders']} render(s) for {plan['date']}: {t['submit']} to submit "
        f"({t['seconds_to_submit']:.1f} s of video), {t['resume']} to resume, "
        f"{t['reuse_stored']} reused from storage" + (" (force_render is on)" if plan["force_render"] else "")
    )


def _verdict(plan: Mapping[str, Any]) -> str:
    limits = plan["limits"]
    if plan["over_cap"]:
        return f"over max_renders_per_run = {limits['max_renders_per_run']}: the run fails, nothing is submitted"
    if plan["approval_required"]:
        return f"over approval_over_renders = {limits['approval_over_renders']}: the run waits for approval"
    return (
        f"within the limits (max_renders_per_run = {limits['max_renders_per_run']}, "
        f"approval_over_renders = {limits['approval_over_renders']}): no approval needed"
    )


def _columns(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    table = [list(header), *map(list, rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]


def plan_table(plan: Mapping[str, Any]) -> str:
    """The plan for the task log: a summary line, one row per render, the limits' verdict."""
    rows = [
        (r["video_id"], r["style"], r["clip"], f"{r['seconds']:.2f}", r["decision"], r["reason"])
        for r in plan["renders"]
    ]
    lines = _columns(("video", "style", "clip", "seconds", "decision", "why"), rows)
    return "\n".join([f"Spend plan: {_summary(plan)}", *lines, f"Limits: {_verdict(plan)}"])


def approval_request(plan: Mapping[str, Any]) -> dict[str, str]:
    """The approval's ``subject`` and Markdown ``body``: totals, then one row per video and style."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for r in plan["renders"]:
        group = groups.setdefault((r["video_id"], r["style"]), {"renders": 0, "submit": 0, "seconds": 0.0})
        group["renders"] += 1
        if r["decision"] == "submit":
            group["submit"] += 1
            group["seconds"] += r["seconds"]
    t, limits = plan["totals"], plan["limits"]
    lines = [
        f"**{t['submit']} Runway render(s) to submit for {plan['date']}**, "
        f"{t['seconds_to_submit']:.1f} s of video; {t['reuse_stored']} reused from storage, "
        f"{t['resume']} resumed (already paid for)." + (" `force_render` is on." if plan["force_render"] else ""),
        "",
        f"This is over `approval_over_renders` = {limits['approval_over_renders']} "
        f"(the run's cap, `max_renders_per_run`, is {limits['max_renders_per_run']}).",
        "",
        "| video | style | renders | to submit | seconds to submit |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {video} | {style} | {g['renders']:.0f} | {g['submit']:.0f} | {g['seconds']:.1f} |"
            for (video, style), g in groups.items()
        ),
        "",
        "**Approve** to submit them. **Reject** and nothing is submitted: the restyle tasks are skipped.",
    ]
    subject = f"Submit {t['submit']} Runway render(s) ({t['seconds_to_submit']:.0f} s of video) for {plan['date']}?"
    return {"subject": subject, "body": "\n".join(lines)}


def cap_exceeded_message(plan: Mapping[str, Any], variable: str) -> str:
    t, cap = plan["totals"], plan["limits"]["max_renders_per_run"]
    return (
        f"This run would submit {t['submit']} render(s) ({t['seconds_to_submit']:.1f} s of video) for "
        f"{plan['date']}, more than max_renders_per_run = {cap} (the Variable {variable!r} or the run's "
        "max_renders_per_run param). Nothing was submitted. Raise the limit for this run, process fewer "
        "days or styles at a time, or check why so few renders could be reused from storage."
    )


def outcome_totals(decisions: Iterable[str | None]) -> dict[str, int]:
    """What the restyle tasks did, from their results' ``decision``: counts per decision and the total."""
    totals = {"renders": 0, **dict.fromkeys(DECISIONS, 0)}
    for decision in decisions:
        totals["renders"] += 1
        key = decision if decision in DECISIONS else "unknown"
        totals[key] = totals.get(key, 0) + 1
    return totals
