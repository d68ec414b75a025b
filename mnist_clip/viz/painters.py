"""A run's pictures drawn by helper processes: each loads matplotlib while TensorFlow loads
(on the core the import leaves idle) and draws its share of the figures once the run ends."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

from mnist_clip.console.interrupts import drawing_stopped

REPLY_POLL_SECONDS = 0.05  # how often a wait for a painter looks for a stop request

PAINTERS = 2  # the figures split about evenly in two; a third would only compete for the cores


class Painters:
    """Started before training; draw(run_dir) has them draw the run's figures in parallel.
    A painter that cannot start or fails leaves its share to this process, which then
    draws it (and reports its errors) exactly as without painters."""

    def __init__(self, count: int = PAINTERS):
        self.procs: list[subprocess.Popen] = []
        for _ in range(count):
            try:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", "from mnist_clip.viz.painters import serve; serve()", str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                ))
            except OSError:
                break

    def draw(self, run_dir: Path, announce: Callable[[list[str]], None] = lambda names: None) -> list[Path]:
        """Have the painters draw the run's figures, announcing their names (the first painter's
        first answer) before the drawing goes on."""
        count = max(1, len(self.procs))
        asked = []
        for share, proc in enumerate(self.procs):
            try:
                proc.stdin.write(json.dumps({"run": str(run_dir), "share": share, "of": count}) + "\n")
                proc.stdin.flush()
                asked.append((share, proc))
            except OSError:
                pass
        names = None
        for _, proc in asked:  # each answers with the names at once, then with what it drew
            said = self.read(proc).get("names")
            if names is None and said is not None:
                names = said
                announce(names)
        if names is None and not drawing_stopped():
            from mnist_clip.viz.registry import figure_names

            names = figure_names(run_dir)
            announce(names)
        drawn: dict[int, str] = {}
        left = set(range(count))
        for share, proc in asked:
            reply = self.read(proc)
            if "drawn" in reply:
                drawn.update((int(index), path) for index, path in reply["drawn"])
                left.discard(share)
        if drawing_stopped():  # Ctrl-C while drawing: keep what is drawn, stop the rest at once
            self.stop()
            return [Path(drawn[index]) for index in sorted(drawn)]
        if left:  # this process draws what a painter could not
            from mnist_clip.viz.registry import write_run_plots

            for share in sorted(left):
                own = names[share::count]
                for path in write_run_plots(run_dir, own):
                    drawn[names.index(path.name)] = str(path)
        return [Path(drawn[index]) for index in sorted(drawn)]

    @classmethod
    def read(cls, proc: subprocess.Popen) -> dict:
        """A painter's next answer; {} when it has ended or failed, or a stop is asked for."""
        try:
            return json.loads(cls.reply(proc) or "{}")
        except (OSError, ValueError):
            return {}

    @staticmethod
    def reply(proc: subprocess.Popen) -> str:
        """A painter's one line of reply, or "" once a stop is asked for while waiting."""
        while not drawing_stopped():
            ready, _, _ = select.select([proc.stdout], [], [], REPLY_POLL_SECONDS)
            if ready:
                return proc.stdout.readline()
        return ""

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        self.close()

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.procs = []


def serve() -> None:
    """A painter: load matplotlib, then draw the share of figures asked for on stdin."""
    from mnist_clip.console.interrupts import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle
    die_with_parent(int(sys.argv[1]))
    import matplotlib

    matplotlib.use("Agg")
    from mnist_clip.viz.registry import figure_names, write_run_plots

    line = sys.stdin.readline()
    if line:  # empty: the run ended without pictures
        try:
            task = json.loads(line)
            names = figure_names(task["run"])
            answer({"names": names})
            paths = write_run_plots(task["run"], names[task["share"]::task["of"]])
            reply = {"drawn": [[names.index(path.name), str(path)] for path in paths]}
        except Exception as err:  # the run draws this share itself and reports the error
            reply = {"error": str(err)}
        answer(reply)
    # Done, its files written whole: end now. Tearing down an interpreter that holds matplotlib
    # takes a tenth of a second, which the run would spend waiting before it reports.
    os._exit(0)


def answer(reply: dict) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
