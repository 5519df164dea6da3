"""Remote commands to boards (issue #14 item 5, protocol.md "Commands", D27-A): the queue in
``device_commands`` (:mod:`.queue`), the config keys the cloud may set (:mod:`.config_keys`) and
the dated canteen menu (:mod:`.menu`). Delivered by cloud/workers/command_push.py."""
