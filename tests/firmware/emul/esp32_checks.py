# Output checks for the hal.esp32 board tests (esp32_harness.check_outputs): boot-safe relays,
# LEDs and buzzer, passage sensor inputs, buses as configured. CPython and MicroPython.
import machine_shim


def _off_only(pin, off, what):
    assert pin.mode == pin.OUT, what + ": not an output"
    assert pin.first == off, f"{what}: created at level {pin.first}, OFF is {off}"
    assert pin.seen == 1 << off, f"{what}: driven to the ON level (seen mask {pin.seen})"


def check_outputs(cfg, board):
    """Every relay, LED and buzzer pin was created at its OFF level and never left it."""
    pins = machine_shim.pins
    relays = cfg.get("relays") or ()
    assert len(board.relays) == len(relays)
    for i in range(len(relays)):
        r = relays[i]
        off = 0 if r.get("active_high", True) else 1
        _off_only(pins[r["pin"]], off, f"relays[{i}]")
        rel = board.relays[i]
        assert rel.is_on is False and rel.pin is pins[r["pin"]]
        assert rel.pulse_ms == r.get("pulse_ms", 300) and rel.reader == r.get("reader")
        if r.get("reader"):
            assert board.relay_for(r["reader"]) is rel
    if relays:
        assert board.relay is board.relays[0]
    else:
        assert board.relay.is_on is False  # a stand-in: Door may still switch it
    ld = cfg.get("leds") or {}
    off = 0 if ld.get("active_high", True) else 1
    for k in ("green", "red"):
        if ld.get(k) is not None:
            _off_only(pins[ld[k]], off, "leds." + k)
    bz = cfg.get("buzzer")
    if bz:
        pin = pins[bz["pin"]]
        _off_only(pin, 0 if bz.get("active_high", True) else 1, "buzzer")
        pwm = [w for w in machine_shim.pwms if w.pin is pin]
        if bz.get("freq_hz"):
            assert len(pwm) == 1 and pwm[0].first == 0 and pwm[0].max_duty == 0
            assert pwm[0].f == bz["freq_hz"] and board.buzzer.out is pwm[0]
        else:
            assert not pwm and board.buzzer.out is pin
    for s in cfg.get("passage_sensors") or ():
        p = pins[s["pin"]]
        assert p.mode == p.IN
        want = {"up": p.PULL_UP, "down": p.PULL_DOWN}.get(s.get("pull"))
        assert p.pull == want
    for name in cfg.get("buses") or {}:
        b = cfg["buses"][name]
        if b["type"] == "spi":
            assert [s for s in machine_shim.spis if s.id == b.get("id", 2)
                    and s.baudrate == b.get("baudrate", 1000000)], name
        else:
            assert [i for i in machine_shim.i2cs if i.id == b.get("id", 0)
                    and i.freq == b.get("freq", 400000)], name
