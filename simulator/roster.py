"""A seeded, reproducible roster of pupils and staff with their card UIDs."""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = (
    "Aigerim Alibek Aruzhan Askar Aisha Bauyrzhan Dana Daniyar Dias Ernur Gulnur Islam Kamila "
    "Madina Miras Nurlan Nursultan Rustem Sanzhar Saule Timur Togzhan Yerlan Zhanar Zarina"
).split()
LAST = (
    "Abenov Akhmetov Baimukhamedov Dzhaksybekov Iskakov Kassymov Mukanov Nurpeisov Omarov "
    "Sadykov Seitkali Suleimenov Tokayev Utemisov Zhakenov Zhunusov"
).split()


@dataclass(frozen=True)
class Person:
    name: str
    kind: str  # "student" | "staff"
    uid: bytes  # the card's ISO 14443A UID as a reader returns it


def make_roster(students: int, staff: int = 0, seed: int = 1) -> list[Person]:
    """Deterministic for a seed; UIDs are unique 4-byte (pupils) or 7-byte (staff) values."""
    rng = random.Random(seed)
    seen: set[bytes] = set()
    people: list[Person] = []
    for kind, count, uid_len in (("student", students, 4), ("staff", staff, 7)):
        for _ in range(count):
            uid = bytes(rng.getrandbits(8) for _ in range(uid_len))
            while uid in seen:
                uid = bytes(rng.getrandbits(8) for _ in range(uid_len))
            seen.add(uid)
            people.append(Person(f"{rng.choice(FIRST)} {rng.choice(LAST)}", kind, uid))
    return people
