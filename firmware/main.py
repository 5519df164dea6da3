# Entry point. cwd is the board's flash directory (board.json, device.json, whitelist.bin,
# journal files). The boot counter is incremented and persisted before anything else happens, so
# every event of this boot gets an identity never used before (protocol.md "Names").
from store.journal import Journal, next_boot

boot = next_boot(".")

import gc  # noqa: E402  (after the boot counter on purpose)
import json  # noqa: E402

# The sim runs in a 64 KiB heap (an ESP32 has not much more): loading a module needs scratch
# RAM, so collect between imports to keep the heap from fragmenting. Import statements, not a
# loop over a tuple of names: a name of more than 10 characters would be a string object in the
# heap for as long as the board runs (main's constants live with main()), an import names a qstr.
import store.whitelist  # noqa: E402, F401
gc.collect()
import store.cardkey  # noqa: E402, F401
gc.collect()
import net.mqttpkt  # noqa: E402, F401
gc.collect()
import net.mqtt  # noqa: E402, F401
gc.collect()
import net.link  # noqa: E402, F401
gc.collect()
import net.sync  # noqa: E402, F401
gc.collect()
import net.clock  # noqa: E402, F401
gc.collect()
import app.door  # noqa: E402, F401
gc.collect()
import app.runner  # noqa: E402, F401
gc.collect()
import app.supervisor  # noqa: E402, F401
gc.collect()


def _load(path):
    with open(path) as f:
        return json.load(f)


def _board():
    # The HAL adapter named in board.json. The dict is loaded here, not in main(), whose frame
    # lives as long as the board runs and would keep it in the heap for good.
    cfg = _load("board.json")
    name = cfg.get("hal", "sim")
    b = getattr(__import__("hal." + name), name).Board(cfg)
    if "eth" in cfg:  # the Ethernet PHY's pins (net/netup.py): only on a board that has one
        b.eth = cfg["eth"]
    return b


def main():
    global boot
    dev_cfg = _load("device.json")
    journal = Journal(".")
    # boot.cnt was lost or corrupt (an erased flash): never reuse a boot the journal has already
    # seen, nor one the cloud holds ("boot_floor", set at provisioning; protocol.md "Boot floor").
    floor = max(journal.min_boot(), dev_cfg.get("boot_floor") or 0)
    if floor >= boot:
        boot = next_boot(".", floor)
    from app.runner import App
    from app.supervisor import start_supervisor
    gc.collect()
    # Watchdog, safe mode and the optional door features around App(...).run() (app/supervisor).
    start_supervisor(App, _board(), dev_cfg, boot, journal)


main()
