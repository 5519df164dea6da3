"""Domain logic: card keys, whitelist files, the registry of schools, devices, people, cards."""
