"""OTA updates of the boards' application image (issue #14 item 6, docs/ota.md)."""
