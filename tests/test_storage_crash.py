"""Crash safety: a writer killed with SIGKILL mid-write leaves a sound file with every
transaction it reported as committed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from storage import Database, State, Store

ROOT = Path(__file__).resolve().parent.parent


async def test_sigkill_mid_write_keeps_every_committed_write(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    rng = random.Random(1234)
    committed: set[int] = set()
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_writer", str(path), str(round_ * 100_000)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        target = rng.randint(20, 120)
        seen = 0
        for line in proc.stdout:  # blocks only until the child prints; bounded by `target`
            if line.startswith("committed "):
                committed.add(int(line.split()[1]))
                seen += 1
                if seen >= target:
                    break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        db = await Database.open(path)
        try:
            assert await db.integrity_check() == "ok"
            store = Store(db)
            for sub_id in committed:
                sub = await store.get(sub_id)
                assert sub is not None, f"committed submission {sub_id} lost in round {round_}"
                assert sub.state is State.SUBMITTING
        finally:
            await db.close()
    assert len(committed) >= 100
