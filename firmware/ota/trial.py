# The running image's side of OTA (docs/ota.md): what the status says about it (fw: its release,
# slot, trial: trial boots left, rb: a release that failed its trial) and the trial itself. An
# image on trial is confirmed by its first successful cloud ack: an event batch the cloud acked
# (Sync.acked), or, on a board with nothing to send, the cloud's ack of its trial status on the
# ack topic ({"v":1,"trial":ver,"mac":..}, the mac as every ack's with an ack key). Without one
# within device.json "ota_trial_s" (300 s) the board restarts; slots.boot() counts the trial
# boots down and goes back to the confirmed image after the last.
import slots
from compat import emit

try:
    from micropython import const
except ImportError:  # CPython (the firmware's tests run there too)
    def const(x):
        return x

_TRIAL_S = const(300)  # a const: no name interned on the board (D29-G)


def setup(app):
    """At start-up of a board with slots (app/runner.py): the slot state into the status, the
    OTA topic to the subscriptions; unloads this module (and slots) again unless on trial."""
    s = slots.load()
    slot = slots.running(s)
    sy = app.sync
    st = sy.status
    v = s["ver"].get(slot)
    if v:
        st["fw"] = v
    st["slot"] = slot
    if s.get("rb"):
        st["rb"] = s["rb"]
    sy.subs.append(sy.t_status[:-6] + "ota")
    try:  # the bootstrap refused the last download (ota/check.py): say why
        import json
        with open("ota.err") as f:
            st["ota"] = json.loads(f.read())
    except (OSError, ValueError):
        pass
    if s.get("try"):
        st["trial"] = s.get("left", 0)
    else:
        from compat import unload
        unload("ota.trial", "slots")


def _confirm(sync, how):
    slots.confirm()
    st = sync.status
    del st["trial"]
    sync.status_changed()
    emit("ota", {"confirmed": st.get("fw"), "by": how})


def ack(sync, payload):
    """A payload on the ack topic that is not an event ack, while on trial."""
    import json
    try:
        a = json.loads(bytes(payload))
        ver = a["trial"]
        mac = a.get("mac")
    except (ValueError, KeyError, TypeError):
        return
    if ver != sync.status.get("fw") or "trial" not in sync.status:
        return
    if sync.key:
        from net.sync import sign
        if mac != sign(sync.key, b"%s|trial|%s" % (sync.device.encode(), ver.encode())):
            sync.error("ack", "mac")
            return
    _confirm(sync, "status")


async def watch(app):
    """Runs while the image is on trial: confirm on the first event ack, restart when no ack
    came in time."""
    from compat import sleep_ms, ticks_diff, ticks_ms
    s = app.sync
    t0 = ticks_ms()
    limit = app.cfg.get("ota_trial_s", _TRIAL_S) * 1000
    while "trial" in s.status:
        if s.acked:
            _confirm(s, "events")
            return
        if ticks_diff(ticks_ms(), t0) > limit:
            emit("ota", {"trial": "timeout"})
            s.error("ota", "trial")
            app._reboot()
            return
        await sleep_ms(500)
