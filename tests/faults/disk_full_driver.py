"""Runs `rig run` on a small file system and fills that file system while the trial runs.

Run inside a private mount namespace where ``FOLDER`` is a fresh small tmpfs (see
test_disk_full.py): ``python disk_full_driver.py CONFIG FOLDER COPY_TO``. It starts the trial
with its output in FOLDER/trials, waits until the writer holds frames, then writes a ballast file
until the file system is full (as another program filling the disk would), waits for the trial to
end, copies the trial files to COPY_TO (the tmpfs vanishes with the namespace) and prints one
line of JSON: the rig's exit code, its output, the ballast's size.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BALLAST_BLOCK_BYTES = 64 * 1024
FILL_AFTER_FRAMES = 200
WRITER_FRAMES = re.compile(r" \| writer (\d+) frames")
RUNNING_TIMEOUT_S = 240.0
TRIAL_TIMEOUT_S = 240.0


def main(config: Path, folder: Path, copy_to: Path) -> dict[str, object]:
    trials = folder / "trials"
    rig = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", "--config", str(config), "--output", str(trials)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if rig.stdout is None:
        raise RuntimeError("no stdout pipe")
    lines: list[str] = []
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    for line in rig.stdout:
        lines.append(line.rstrip("\n"))
        # "... | writer 212 frames, 13400 samples": the fewest frames the writer holds of any
        # camera; fill the disk once every camera has a few chunks' worth.
        held = WRITER_FRAMES.search(line)
        if held is not None and int(held[1]) >= FILL_AFTER_FRAMES:
            break
        if time.monotonic() > deadline:
            break
    free_before = shutil.disk_usage(folder).free
    ballast = 0
    with (folder / "ballast").open("wb", buffering=0) as handle:
        block = b"\xa5" * BALLAST_BLOCK_BYTES
        while True:
            try:
                ballast += handle.write(block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    filled_at = time.monotonic()
    remaining, errors = rig.communicate(timeout=TRIAL_TIMEOUT_S)
    lines += remaining.splitlines()
    copy_to.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(trials.glob("*.h5")):
        shutil.copy2(path, copy_to / path.name)
        copied.append(path.name)
    return {
        "returncode": rig.returncode,
        "stdout": lines,
        "stderr_tail": errors[-4000:],
        "free_before_ballast_bytes": free_before,
        "ballast_bytes": ballast,
        "trial_ended_after_fill_s": round(time.monotonic() - filled_at, 2),
        "files": copied,
    }


if __name__ == "__main__":
    config_path, folder_path, copy_path = (Path(argument) for argument in sys.argv[1:4])
    os.chdir(Path(__file__).resolve().parents[2])
    print(json.dumps(main(config_path, folder_path, copy_path)), flush=True)
