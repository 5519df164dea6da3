"""Parts of the technician tool (tools/flash.py): the MicroPython image (esptool), the board's
raw REPL (mpremote's SerialTransport), the cloud's view of the board (MQTT), the claim-token
exchange with the cloud (provision.py) and progress output."""

from __future__ import annotations


class FlashError(RuntimeError):
    """A problem the technician must fix; `code` is the process exit code."""

    code = 1

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


# Exit codes of `qadam flash` (docs/flashing.md).
EXIT_CONFIG = 1  # a config, claim token or image file is wrong; nothing was touched
EXIT_USAGE = 2  # a file named on the command line does not exist
EXIT_PORT = 3  # the serial port does not exist or cannot be opened
EXIT_NO_MICROPYTHON = 4  # the port answers, but not with a MicroPython raw REPL
EXIT_MPY_MISMATCH = 5  # the board's MicroPython cannot load what our mpy-cross produces
EXIT_VERIFY = 6  # a file on the board does not hash to what was sent, or the board failed
EXIT_OFFLINE = 7  # --wait-online: the board did not report online in time
EXIT_ESPTOOL = 8  # erasing or writing the MicroPython image failed
EXIT_BROKER = 9  # --wait-online: the MQTT broker cannot be reached
EXIT_CLOUD = 10  # --cloud: the cloud cannot be reached or failed; nothing was written
EXIT_CLAIM_REFUSED = 11  # --cloud: the claim token was refused (403); nothing was written
