"""Issue 13, review 2: attacks on the re-keying soft token (format 3), the two-phase PIN change
and the reserved PIN try (docs/STORAGE.md), tried against real daemons. Each test fails if its
attack works. docs/SECURITY.md, "Attacks tried", storage block, rows "review 2"."""
import subprocess
import time

from conftest import TRUSTME, wait_for
from test_storage import (KDF, PIN, PUK, create_paired, enc, pin_file, sdaemon,  # noqa: F401
                          start)

SLOW_KDF = {"type": "soft", "kdf_n": 1 << 17}  # ~0.3 s of scrypt: time to act during a try


def tries_left(d, name):
    return enc(d, name)["pin_tries_left"]


def test_cancelled_starts_with_the_right_pin_cost_no_try(sdaemon):
    """An honest user (or an orchestrator with a start timeout) stops a container while its start
    is at scd with the right PIN. The try was counted before scd saw the PIN; the right PIN must
    reset it even though the start is gone, or three cancelled starts lock the token without a
    single wrong PIN."""
    d = sdaemon
    create_paired(d, "cx", token=SLOW_KDF)
    start(d, "cx")
    d.cli("stop", "--kill", "cx")
    cmd = [str(TRUSTME), "--run-dir", str(d.run_dir), "start", "--pin-file",
           str(pin_file(d, PIN)), "cx"]
    for _ in range(3):
        left = tries_left(d, "cx")
        if left == 0:
            break
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the try is counted (or the reservation taken) before scd gets the PIN
        wait_for(lambda: tries_left(d, "cx") == left - 1, timeout=20, interval=0.005,
                 what="the try to be counted")
        d.cli("stop", "--kill", "cx")
        p.communicate(timeout=60)
        # scd's answer (the right PIN) comes after the start is gone
        time.sleep(1.5)
    assert tries_left(d, "cx") == 3, "cancelled starts with the right PIN used up tries"
    start(d, "cx")
    d.cli("stop", "--kill", "cx")
