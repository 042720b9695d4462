"""What an adaptive sweep (``sweep --until-ci W``) says at its end: where each cell's interval stands."""

from __future__ import annotations

import math

from masbench.cli.output import stdout_console


def plan_note(cells) -> str | None:
    """``--dry-run``'s line on adaptive seeds: the cells listed are round 1 only."""
    adaptive = [cell for cell in cells if cell.until_ci is not None]
    if not adaptive:
        return None
    widths = sorted({cell.until_ci for cell in adaptive})
    most = max(cell.max_seeds for cell in adaptive)
    return (f"adaptive seeds: these are round 1; then each cell gets more seeds until its CI95 half-width (±) is at "
            f"most {', '.join(f'{w:g}' for w in widths)} points, up to {most} seeds")


def report_seeds(groups) -> None:
    """A count of the cells that reached their width, then a line for each that did not, or whose
    interval leaves runs out (failed or diverged: they have no accuracy, as in the report)."""
    out = stdout_console()
    adaptive = [g for g in groups if g.until_ci is not None]
    met = sum(1 for g in adaptive if g.met)
    out.print(f"adaptive seeds: {len(adaptive)} cells, {met} with CI95 half-width at most the one asked, "
              f"{len(adaptive) - met} stopped at their max seeds", markup=False)
    for group in adaptive:
        if group.met and not group.left_out:
            continue
        spec = group.first.spec
        width = "-" if math.isnan(group.width) else f"{group.width:.2f}"
        verdict = "<=" if group.met else ">"
        left = f", {group.left_out} not completed (failed or diverged: not in the interval)" if group.left_out else ""
        out.print(f"  {spec.name} {spec.dataset}/{spec.model}: ±CI95 {width} {verdict} {group.until_ci:g} over "
                  f"{len(group.accs)} completed of {group.tried} seeds (max {group.max_seeds}){left}", markup=False)
