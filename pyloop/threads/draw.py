"""Showing recorded runs: a text table, and a PNG timeline (matplotlib) with one lane
per thread, like an IDE's concurrency diagram."""

_KIND_LABEL = {"main": "main", "python": "Python", "os": "OS"}
_COLORS = {"main": "#1f77b4", "python": "#d62728", "os": "#2ca02c"}


def failure(run):
    """What went wrong in a run whose script failed, in a line; None if it did not."""
    if not run.get("exit_code"):
        return None
    error = run.get("error")
    return f"the script FAILED on {run['loop']} (exit code {run['exit_code']}" + (f": {error})" if error else ")")


def summary(run):
    n_py = sum(t["kind"] == "python" for t in run["threads"])
    n_os = sum(t["kind"] == "os" for t in run["threads"])
    line = (f"{run['loop']}: {n_py} Python thread{'s' * (n_py != 1)}, "
            f"{n_os} other OS thread{'s' * (n_os != 1)} (Python {run['python']}; "
            f"script {run['script_time'] * 1e3:.0f} ms, process {run['duration'] * 1e3:.0f} ms)")
    failed = failure(run)
    return f"{line}\n  {failed}: below is what it did until then" if failed else line


def _ms(v):
    return "-" if v is None else f"{v * 1e3:.1f}"


def table(runs):
    """One block per run: each thread's kind, name, id, life (ms from the script's
    start), CPU time and what started it."""
    lines = []
    for run in runs:
        lines.append(summary(run))
        rows = [("kind", "name", "tid", "start ms", "end ms", "CPU ms", "started from")]
        for t in run["threads"]:
            origin = " <- ".join(t["started_from"])
            if t["executor"]:
                origin = f"[{t['executor']}] {origin}"
            name = t["name"] if t["kind"] != "os" else f"[comm: {t['comm']}]"
            rows.append((_KIND_LABEL[t["kind"]], name, str(t["tid"]), _ms(t["start"]), _ms(t["end"]), _ms(t["cpu"]),
                         origin))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths))) + "  " + r[6])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _label(t):
    if t["kind"] == "main":
        return "MainThread (the loop)"
    if t["kind"] == "os":
        return f"OS thread {t['tid']} ({t['comm']})"
    return t["name"]


def png(runs, path, title=None):
    """Draws the runs one above the other (same time axis) into path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    heights = [max(len(r["threads"]), 1) for r in runs]
    fig, axes = plt.subplots(len(runs), 1, sharex=True, squeeze=False,
                             figsize=(11, 1.2 + 0.42 * sum(heights) + 0.5 * len(runs)),
                             gridspec_kw={"height_ratios": heights})
    x_max = max(max((t["end"] for t in r["threads"]), default=r["duration"]) for r in runs) or 1e-3
    for ax, run in zip(axes[:, 0], runs):
        lanes = run["threads"]
        for i, t in enumerate(lanes):
            y = len(lanes) - 1 - i  # the main thread on top
            color = _COLORS[t["kind"]]
            ax.broken_barh([(t["start"], max(t["end"] - t["start"], x_max / 500))], (y - 0.35, 0.7),
                           facecolors=color, alpha=0.18, edgecolor=color, linewidth=0.6)
            if t["busy"]:
                ax.broken_barh([(a, max(b - a, x_max / 2000)) for a, b, _ in t["busy"]], (y - 0.35, 0.7),
                               facecolors=[(*matplotlib.colors.to_rgb(color), 0.25 + 0.75 * f)
                                           for _, _, f in t["busy"]], linewidth=0)
            note = " <- ".join(t["started_from"][:4])
            if note:
                ax.text(t["start"] + x_max / 200, y + 0.38, note, fontsize=6.5, va="bottom", color="#333333",
                        clip_on=True)
        ax.set_yticks(range(len(lanes)))
        ax.set_yticklabels([_label(t) for t in reversed(lanes)], fontsize=8)
        ax.set_ylim(-0.6, len(lanes) - 0.1 + 0.35)
        ax.set_title(summary(run), fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlim(0, x_max * 1.02)
    axes[-1, 0].set_xlabel(f"seconds since the script started (OS threads sampled every "
                           f"{runs[0]['interval'] * 1e3:g} ms; darker = busier)")
    fig.legend(handles=[Patch(color=_COLORS["main"], alpha=0.6, label="main thread"),
                        Patch(color=_COLORS["python"], alpha=0.6, label="Python thread"),
                        Patch(color=_COLORS["os"], alpha=0.6, label="OS thread, not Python's (C pools)")],
               loc="upper right", fontsize=8, ncol=3, frameon=False)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
