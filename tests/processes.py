"""A command under test in its own process group, its output read as it comes: tests wait
for what the program says, never for a fixed time."""

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path


class Command:
    def __init__(self, *args: str, cwd=None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_clip", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd=cwd, start_new_session=True,
        )
        self.lines = {"stdout": [], "stderr": []}
        self._queues = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        for name in ("stdout", "stderr"):
            threading.Thread(target=self._pump, args=(name,), daemon=True).start()

    def _pump(self, name: str) -> None:
        for line in getattr(self.proc, name):
            self.lines[name].append(line)
            self._queues[name].put(line)
        self._queues[name].put(None)

    def wait_for(self, text: str, stream: str = "stdout", timeout: float = 120) -> str:
        """Block until a line containing `text` appears; fail if the program ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queues[stream].get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"ended before {text!r}:\n{self.output()}")
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output()}")

    def signal(self, signum: int, group: bool = False) -> None:
        """To the command alone, or (group) to its whole process group as a terminal's Ctrl-C does."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def finish(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        for name in ("stdout", "stderr"):
            while self._queues[name].get(timeout=10) is not None:
                pass
        return code

    def output(self) -> str:
        return "".join(self.lines["stdout"]) + "".join(self.lines["stderr"])

    def children(self) -> list[int]:
        """The pids whose parent is this command (its worker processes)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 30, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{message} did not happen within {timeout} s")
