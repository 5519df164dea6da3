# Runs firmware case modules inside the MicroPython VM (also works under CPython):
#   micropython -X heapsize=64K tests/firmware/mp_runner.py test_fw_journal [...]
# Calls every test_* function of each module; prints PASS/FAIL lines and exits 1 on any failure.
import sys

HERE = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
# QADAM_FW_DIR / QADAM_CASES_DIR: firmware/ and the case modules compiled to .mpy (the pytest
# wrapper sets them); without them the modules are compiled from source inside the heap under test.
try:
    import os

    FW = os.getenv("QADAM_FW_DIR")
    CASES = os.getenv("QADAM_CASES_DIR")
except (ImportError, AttributeError):
    FW = CASES = None
sys.path.append(FW or HERE + "/../../firmware")
sys.path.append(CASES or HERE + "/cases")


def run(modname):
    failed = 0
    mod = __import__(modname)
    names = sorted(n for n in dir(mod) if n.startswith("test_"))
    for name in names:
        try:
            getattr(mod, name)()
            print(f"PASS {modname}.{name}")
        except Exception as e:
            failed += 1
            print(f"FAIL {modname}.{name}")
            if hasattr(sys, "print_exception"):
                sys.print_exception(e)
            else:
                import traceback
                traceback.print_exc()
        try:
            import gc
            gc.collect()
        except ImportError:
            pass
    if not names:
        print(f"FAIL {modname}: no tests")
        failed += 1
    return failed


def main():
    failed = 0
    for m in sys.argv[1:]:
        failed += run(m)
    print(str(failed) + " failed")
    sys.exit(1 if failed else 0)


main()
