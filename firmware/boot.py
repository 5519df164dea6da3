# Runs before main.py on the ESP32. Kept minimal: everything that can fail lives in main.py.
import gc

gc.collect()
