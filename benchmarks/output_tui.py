"""The TUI following a job that writes 100 MB as fast as it can (issue 15).

A shell job (a Python one-liner: 1 MB blocks of 100-byte lines to stdout, then one line
`END <time.time()>`) is queued on a paused queue and `jobrunner daemon --workers 2` started;
the TUI, headless in a process of its own (App.run_test), opens the job's detail screen; then
the queue is resumed and the daemon runs the job.
The TUI process watches its own screen: the moment the END line is drawn in the log view it
reports how long after the job wrote it that was (one clock: both read time.time()), its
peak RSS (ru_maxrss) and the longest the UI loop went without a turn (pilot.pause(0.01)
slices that came back late: a stall a person would feel as a frozen screen or a late Escape).

Bars (issue 15): the last line within 1 s of the job's end; the TUI's memory at most 150 MB.
Usage: python -m benchmarks.output_tui [--quick]
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, table
from benchmarks.procs import ROOT, child_env, end_group, jobrunner_daemon, read_line, wait_daemon_ready

# argv: megabytes, then `lines` (100-byte lines) or `line` (one line, never a newline)
WRITER = (
    "import sys, time\n"
    "out = sys.stdout.buffer\n"
    "block = (b'x' * 99 + b'\\n') * 10_486 if sys.argv[2] == 'lines' else b'x' * 1_048_576\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    out.write(block)\n"
    "out.write(b'END ' + repr(time.time()).encode() + (b'\\n' if sys.argv[2] == 'lines' else b''))\n"
    "out.flush()\n"
)
SIZE = (120, 35)


def measure(quick: bool = False) -> list[Figure]:
    runs = 1 if quick else 3
    figures = figures_for(10 if quick else 100, "lines", runs)
    return figures + figures_for(5 if quick else 50, "line", runs)


def figures_for(megabytes: int, shape: str, runs: int) -> list[Figure]:
    results = [follow_once(megabytes, shape) for _ in range(runs)]
    what = f"a {megabytes} MB job" if shape == "lines" else f"one {megabytes} MB line"
    return [
        Figure(f"tui log: last line shown after the job's end ({what})", "ms",
               [r["latency_s"] * 1000 for r in results], higher_is_better=False, bar=1000.0,
               note="from the job writing its last line to the TUI's log view drawing it"
               if shape == "lines" else "the line's last bytes in the view's last line, cut to its latest 8 KB"),
        Figure(f"tui log: peak RSS following {what}", "MB", [r["peak_mb"] for r in results],
               higher_is_better=False, bar=150.0,
               note=f"ru_maxrss of the TUI process; {results[0]['ready_mb']:.0f} MB with the job's screen open, before it ran"),
        Figure(f"tui log: longest UI stall while following ({what})", "ms",
               [r["stall_s"] * 1000 for r in results], higher_is_better=False,
               note="the UI loop's longest turn beyond its 10 ms pause: how late a key could be handled"),
    ]  # fmt: skip


def follow_once(megabytes: int, shape: str) -> dict[str, float]:
    """One run: queue the writer, open it in a headless TUI, start a daemon, read the TUI's report."""
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo

    with tempfile.TemporaryDirectory(prefix="jr-output-tui-") as tmp:
        work = Path(tmp)
        db = work / "jobs.db"
        with isolated(work, JOBRUNNER_DB=str(db)):
            store = open_store(str(db))
            command = [sys.executable, "-c", WRITER, str(megabytes), shape]
            spec = build_spec({"command": command, "cwd": str(work), "queue": "bench"})
            job_id = repo.submit(store, spec, time.time())
            repo.set_queue_paused(store, "bench", True, time.time())  # held until the TUI watches
            with jobrunner_daemon(db, work / "daemon.log") as daemon:
                wait_daemon_ready(db, daemon, work / "daemon.log")  # its start-up is no part of this
                argv = [sys.executable, "-m", "benchmarks.output_tui", "--child", str(db), str(job_id)]
                tui = subprocess.Popen(argv, cwd=ROOT, env=child_env(JOBRUNNER_DB=str(db)), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
                try:
                    ready = json.loads(read_line(tui, 120, "the TUI to open the job"))
                    repo.set_queue_paused(store, "bench", False, time.time())
                    report = json.loads(read_line(tui, 600, "the TUI to show the job's last line"))
                finally:
                    end_group(tui, signal.SIGTERM)
                    store.close()
    return {**report, "ready_mb": ready["rss_mb"]}


# -- the TUI's side, in its own process ----------------------------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def watch(db: str, job_id: int) -> dict[str, float]:
    from jobrunner.store import open_store
    from jobrunner.tui.app import JobrunnerApp
    from jobrunner.tui.logview import LogView
    from jobrunner.tui.screens.detail import DetailScreen

    app = JobrunnerApp(open_store(db))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.push_screen(DetailScreen(job_id))
        while not (isinstance(app.screen, DetailScreen) and app.screen.job):
            await pilot.pause(0.01)
        print(json.dumps({"rss_mb": peak_mb()}), flush=True)
        view = app.screen.query_one(LogView)
        stall = 0.0
        while True:
            before = time.perf_counter()
            await pilot.pause(0.01)
            stall = max(stall, time.perf_counter() - before - 0.01)
            last = view.lines[-1] if view.lines else ""
            if last.startswith("END "):  # a line of its own: it must be drawn, too
                height = view.scrollable_content_region.height
                drawn = [view.render_line(y).text.strip() for y in range(height)]
                last = "" if last not in drawn else last
            if "END " in last:
                return {"latency_s": time.time() - float(last.rpartition("END ")[2]), "peak_mb": peak_mb(),
                        "stall_s": stall}  # fmt: skip


def child(db: str, job_id: str) -> None:
    report = asyncio.run(watch(db, int(job_id)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:4])
    else:
        print(table(measure(quick="--quick" in sys.argv[1:])))
