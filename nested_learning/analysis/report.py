"""Terminal reports: the seed-style retention table and the model comparison that ends the main job."""
from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from nested_learning.analysis import metrics as M
from nested_learning.analysis.results import ACCURACY_LABELS, accuracy_shown, scope_label


def make_console() -> Console:
    """A console for reports: colours on a terminal; wide enough for the tables when piped to a file."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 160))


def _acc_style(value: float) -> str:
    return "green" if value >= 0.8 else "yellow" if value >= 0.5 else "red"


def _signed(value: float | None, bad_when_positive: bool = True) -> str:
    if value is None:
        return "—"
    harmful = value if bad_when_positive else -value
    colour = "red" if harmful > 0.02 else "green"
    return f"[{colour}]{value:+.3f}[/]"


def perplexity_line(result: dict[str, Any]) -> str | None:
    ppl = result.get("perplexity")
    if not ppl:
        return None
    tasks = result["tasks"]
    final = "  ".join(f"{t} {v:.1f}" for t, v in zip(tasks, ppl["final"]))
    learned = "  ".join(f"{t} {v:.1f}" for t, v in zip(tasks, ppl["learned"]))
    return f"Perplexity at the end: {final}  (exp of the mean loss {ppl['mean_final']:.1f});  when learned: {learned}"


def eval_split_label(result: dict[str, Any]) -> str:
    split = result.get("eval_split", "eval")
    if split != "eval":
        return f"split {split}"
    heldout = result.get("heldout", [])
    if heldout and all(heldout):
        return "held-out sentences"
    if heldout and not any(heldout):
        return "the training sentences (memorisation, as in the seed)"
    return "a mix of held-out and training sentences"


def retention_table(result: dict[str, Any]) -> Table:
    """Rows = evaluation tasks, columns = "After <task>" (the seed's layout), plus both forgetting measures."""
    tasks: list[str] = result["tasks"]
    R = result["accuracy_matrix"]
    done = len(R)
    table = Table(
        title=f"{result['model'].upper()} RETENTION  (seed {result['seed']})",
        caption=(
            f"{ACCURACY_LABELS[result.get('eval_metric', 'token')]}{scope_label(result)}, "
            f"{'padding counted (seed)' if result.get('count_padding') else 'padding excluded'}, "
            f"on {eval_split_label(result)}"
        ),
        caption_justify="left",
    )
    table.add_column("Evaluation task", no_wrap=True)
    table.add_column("Before", justify="right")
    for i in range(done):
        table.add_column(f"After {tasks[i]}", justify="right", no_wrap=True)
    table.add_column("Forgetting", justify="right")
    table.add_column("Final - first (seed)", justify="right")
    square = done == len(tasks)
    forgetting = M.forgetting_per_task(R) if square else [None] * len(tasks)
    final_first = M.final_minus_first(R) if square else [None] * len(tasks)
    for j, name in enumerate(tasks):
        cells = [f"{result['initial_accuracy'][j]:.3f}"]
        cells += [f"[{_acc_style(R[i][j])}]{R[i][j]:.3f}[/]" for i in range(done)]
        cells += [_signed(forgetting[j]), _signed(final_first[j], bad_when_positive=False)]
        table.add_row(name, *cells)
    return table


def metrics_line(result: dict[str, Any]) -> str:
    m = result.get("metrics") or {}

    def fmt(key: str) -> str:
        return "—" if m.get(key) is None else f"{m[key]:+.3f}" if key != "acc" else f"{m[key]:.3f}"

    return f"ACC {fmt('acc')}   BWT {fmt('bwt')}   FWT {fmt('fwt')}   Forgetting {fmt('forgetting')}"


LEGEND = (
    "Forgetting = max earlier accuracy - final (Chaudhry et al. 2018; positive = forgot). "
    "Final - first = the seed demo's 'Forgetting' column, final - after first task (positive = improved)."
)


def print_result(result: dict[str, Any], console: Console | None = None, label: str | None = None) -> None:
    """The retention table of one run; `label` names it among others (its settings or job)."""
    console = console or make_console()
    table = retention_table(result)
    if label:
        table.title = f"{table.title}\n{label}"
    console.print(table)
    console.print(metrics_line(result))
    line = perplexity_line(result)
    if line:
        console.print(line, highlight=False)
    console.print(f"[dim]{LEGEND}[/]")


def verdict(names: Sequence[str], forgetting: Sequence[float], spread_overlaps: bool = False) -> str:
    """Which of two groups retained more, by the forgetting metric (lower is better)."""
    (best_f, best), (second_f, second) = sorted(zip(forgetting, names))
    if abs(best_f - second_f) < 1e-12:
        return f"Tie: {best} and {second} forget equally ({best_f:+.3f})."
    line = f"{best} retained more (lower forgetting: {best_f:+.3f} vs {second_f:+.3f})."
    if spread_overlaps:
        line += " The 95% confidence interval of the difference includes 0: not distinguishable at these seeds."
    return line


MAX_TABLES = 4  # a comparison of a few runs shows each one's retention table; a search or grid does not


def summary_table(table_of: Any, groups: dict[str, list[dict[str, Any]]], single: bool, many: bool) -> Table:
    """The groups side by side: one "mean ± std [95% CI]" cell per metric (the mean alone for one seed)."""
    # summary imports pandas and scipy: imported here, they stay out of a single run's start (its table needs neither)
    from nested_learning.analysis.summary import CLIPPED_NOTE, METRICS, format_mean_ci

    rows = []
    for _, row in table_of.iterrows():
        cells = [row["group"], str(row["n"])] + [format_mean_ci(row, m) for m in METRICS]
        if single:
            cells.append(f"{groups[row['group']][0]['final_minus_first'][0]:+.3f}")
        if many:
            cells.append("yes" if row["pareto"] else "")
        rows.append(cells)
    notes = [] if single else [CLIPPED_NOTE]
    runs = [run for members in groups.values() for run in members]
    if any((r.get("eval_metric", "token"), r.get("eval_split", "eval"), scope_label(r)) != ("token", "eval", "") for r in runs):
        notes.append(f"accuracy: {accuracy_shown(runs)}")  # sentence tasks' default goes unsaid, as before
    side = Table(title="CONTINUAL LEARNING SUMMARY" + ("" if single else "  (mean ± std [95% CI, Student t])"),
                 caption="; ".join(notes) or None, caption_justify="left")
    # Labels wrap between overrides, never inside one; a metric cell never wraps (it would split an interval).
    side.add_column("Runs", min_width=max(len(word) for label in groups for word in label.split()))
    side.add_column("n", justify="right")
    for i, metric in enumerate(METRICS, start=2):
        side.add_column(metric.upper() if metric != "forgetting" else "Forgetting", justify="right", no_wrap=True,
                        min_width=max(len(cells[i]) for cells in rows))
    if single:
        side.add_column("Final - first, first task (seed)", justify="right")
    if many:
        side.add_column("Pareto", justify="center")
    for cells in rows:
        side.add_row(*cells)
    return side


def print_unbroken(table: Table, console: Console) -> None:
    """Print at the table's minimum width even past a narrow terminal's: the terminal folds long lines,
    where rich would otherwise cut numbers to "…"."""
    needed = Measurement.get(console, console.options.update(max_width=10_000), table).minimum
    terminal_width = console.width
    console.width = max(terminal_width, needed)
    console.print(table, crop=False)
    console.width = terminal_width


def print_comparison(runs: list[dict[str, Any]], failures: list[tuple[str, str]], console: Console | None = None) -> None:
    """The end of a sweep: each single run's retention table, then the groups side by side."""
    from nested_learning.analysis.summary import aggregate, difference_interval, group_runs

    console = console or make_console()
    if not runs:
        console.print("[red]No run finished: nothing to compare.[/]")
    else:
        groups = group_runs(runs)
        table_of = aggregate(runs)
        single = bool((table_of["n"] == 1).all())
        if single and len(runs) <= MAX_TABLES:
            for label, (run,) in groups.items():
                print_result(run, console, label if label != f"model={run['model']}" else None)  # the title names the model
        many = len(table_of) > 2
        print_unbroken(summary_table(table_of, groups, single, many), console)
        if many:
            console.print("[dim]Pareto: no other row has both higher-or-equal ACC and lower-or-equal forgetting.[/]")
        # A verdict only for a pair: with many groups, "the lowest of 35 means" reads as a finding when
        # it is not one (no correction for multiple comparisons); summary.md has the differences.
        if len(table_of) == 2 and table_of["forgetting_mean"].notna().all():
            overlaps = False
            labels = list(table_of["group"])
            if not single:
                diff, low, high, how = difference_interval(groups[labels[0]], groups[labels[1]], "forgetting")
                console.print(f"Forgetting difference ({labels[0]}) - ({labels[1]}): {diff:+.3f} [95% CI {low:+.3f}, {high:+.3f}; {how}]")
                overlaps = bool(low <= 0 <= high)
            console.print(verdict(labels, list(table_of["forgetting_mean"]), overlaps))
            if single:
                console.print("[dim]One seed per setting: run several seeds (e.g. experiment=fair) before concluding.[/]")
    for job, why in failures:
        console.print(f"[red]failed[/] {job}: {why}")
