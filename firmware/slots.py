# The board's two application slots (OTA, docs/ota.md, D27-B). Each slot holds one firmware
# image (the ROMFS image the flash tool builds) in a file of the board's flash, slot_a.rom and
# slot_b.rom; ota.json says which one runs:
#   {"act": "a", "try": "b"|null, "left": n, "ver": {"a": "1.0.0", "b": "1.1.0"}, "rb": v|null}
# "act" is the last confirmed image, "try" a new one on trial with `left` trial boots to go,
# "rb" the release that failed its trial (reported in the status, never installed again).
# Runs before any image is mounted (the bootstrap imports it from the board's filesystem, then
# drops it), so it imports nothing of the firmware and stays small. Every change of ota.json is
# one write-then-rename: a power cut leaves the old state or the new one.
import json
import os

STATE = "ota.json"


def path(slot):
    return "slot_" + slot + ".rom"


def load():
    try:
        with open(STATE) as f:
            s = json.load(f)
        if s.get("act") in ("a", "b"):
            return s
    except (OSError, ValueError):
        pass
    return {"act": "a", "try": None, "left": 0, "ver": {}, "rb": None}


def save(s):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(s))
    try:
        os.rename(tmp, STATE)
    except OSError:  # FAT refuses to rename onto an existing file
        os.remove(STATE)
        os.rename(tmp, STATE)


def wdt_reset():
    """The last reset was the watchdog's: machine.reset_cause() on a board; in the simulator,
    whose watchdog kills the process, the file it leaves (hal/sim.py)."""
    try:
        import machine
        return machine.reset_cause() == machine.WDT_RESET
    except (ImportError, AttributeError):
        pass
    try:
        os.remove("wdt.rst")
        return True
    except OSError:
        return False


def boot(wdt=False):
    """At power-on, before an image is mounted: the slot to boot. A slot on trial boots while it
    has trial boots left (one is used up now, before it runs); after the last one, or after a
    watchdog reset on trial, the confirmed slot boots again and the trial's release is
    remembered as rolled back. The failed boots of the trial do not count towards the
    supervisor's safe mode of the image that takes over (bootfail.cnt goes)."""
    s = load()
    t = s.get("try")
    if t:
        if s.get("left", 0) > 0 and not wdt:
            s["left"] -= 1
            save(s)
            return t
        s["rb"] = s["ver"].get(t) or "?"
        s["try"] = None
        s["left"] = 0
        save(s)
        try:
            os.remove("bootfail.cnt")
        except OSError:
            pass
    return s["act"]


def running(s):
    # The slot this boot runs (boot() has settled ota.json before the image started).
    return s.get("try") or s["act"]


def activate(slot, ver, tries):
    """A verified image is in `slot`: boot it on trial next, `tries` times at most."""
    s = load()
    s["ver"][slot] = ver
    s["try"] = slot
    s["left"] = tries
    s["rb"] = None
    save(s)


def confirm():
    """The image on trial reached the cloud (its first ack): it becomes the confirmed one."""
    s = load()
    if s.get("try"):
        s["act"] = s["try"]
        s["try"] = None
        s["left"] = 0
        save(s)
    return s


def reset():
    # A board resets; the simulator's process ends with the code its runner reads as a reboot.
    try:
        import machine
        machine.reset()
    except (ImportError, AttributeError):
        pass
    import sys
    sys.exit(75)
