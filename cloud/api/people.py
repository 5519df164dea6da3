"""``/api/v1/people``: people, their cards (add, revoke), guardians, meal eligibility and
allergen restrictions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StrictBool, StrictInt, StringConstraints, model_validator

from cloud.api.deps import (
    CardReader,
    CardRevoker,
    ConnDep,
    GuardianOrAdmin,
    PageDep,
    PeopleReader,
    RestrictionReader,
    SchoolAdmin,
)
from cloud.api.models import (
    BIGINT_MAX,
    CardUid,
    IdPath,
    Input,
    IsoDate,
    Name,
    Page,
    SchoolId,
    page_of,
    text,
)
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.domain import people as domain
from cloud.domain import restrictions, store
from cloud.domain.allergens import Allergen
from cloud.domain.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["people"])

RefId = Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
Kind = Literal["student", "staff"]
CardKeyPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


class PersonIn(Input):
    school_id: SchoolId
    kind: Kind
    full_name: Name
    class_id: RefId | None = None
    external_id: text(1, 100) | None = None  # type: ignore[valid-type]
    access_profile: StrictInt = Field(default=0, ge=0, le=255)


class PersonPatch(Input):
    full_name: Name | None = None
    kind: Kind | None = None
    class_id: RefId | None = None
    external_id: text(1, 100) | None = None  # type: ignore[valid-type]
    access_profile: StrictInt | None = Field(default=None, ge=0, le=255)
    active: StrictBool | None = None


class PersonOut(BaseModel):
    id: int
    school_id: str
    class_id: int | None
    kind: Kind
    full_name: str
    external_id: str | None = None
    active: bool
    meal_category: int
    access_profile: int
    allergen_mask: int


def _visible(conn: ConnDep, p: Principal, person_id: int) -> dict[str, object]:
    scope.require_person(conn, p, person_id)
    return store.get(conn, "people", person_id)


def _out(p: Principal, row: dict[str, object]) -> PersonOut:
    out = PersonOut.model_validate(row)
    if p.role == "canteen_operator":  # the counter needs the name and the meal rights only
        out.external_id = None
    return out


@router.get("/people", response_model=Page[PersonOut])
def list_people(
    conn: ConnDep,
    p: PeopleReader,
    pg: PageDep,
    school: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    class_id: Annotated[int | None, Query(alias="class", ge=1, le=BIGINT_MAX)] = None,
    kind: Kind | None = None,
    active: bool | None = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=100, description="name contains")
    ] = None,
) -> Page[PersonOut]:
    """Guardians see their own children only."""
    where = domain.list_filter(
        conn, p, school=school, class_id=class_id, kind=kind, active=active, name=q
    )
    total, rows = store.page(
        conn, "people", where, order="full_name, id", limit=pg.limit, offset=pg.offset
    )
    return Page[PersonOut](
        total=total, limit=pg.limit, offset=pg.offset, items=[_out(p, r) for r in rows]
    )


@router.post("/people", response_model=PersonOut, status_code=201)
def create_person(conn: ConnDep, p: SchoolAdmin, body: PersonIn) -> PersonOut:
    scope.require_school(conn, p, body.school_id)
    return _out(p, store.insert(conn, p, "people", body.model_dump()))


@router.get("/people/{person_id}", response_model=PersonOut)
def get_person(conn: ConnDep, p: PeopleReader, person_id: IdPath) -> PersonOut:
    return _out(p, _visible(conn, p, person_id))


@router.patch("/people/{person_id}", response_model=PersonOut)
def update_person(conn: ConnDep, p: SchoolAdmin, person_id: IdPath, body: PersonPatch) -> PersonOut:
    _visible(conn, p, person_id)
    values = body.model_dump(exclude_unset=True)
    values = {k: v for k, v in values.items() if v is not None or k in ("class_id", "external_id")}
    return _out(p, store.update(conn, p, "people", person_id, values))


@router.delete("/people/{person_id}", response_model=PersonOut)
def deactivate_person(conn: ConnDep, p: SchoolAdmin, person_id: IdPath) -> PersonOut:
    """People are never deleted (their events stay); this deactivates the person and revokes
    their cards, so the next whitelist no longer lets them in."""
    _visible(conn, p, person_id)
    return _out(p, domain.deactivate(conn, p, person_id))


# ---- cards --------------------------------------------------------------------------------
class CardIn(Input):
    uid: CardUid | None = Field(
        default=None,
        description="the card UID as read: 4, 7 or 10 bytes of hex (ISO 14443A), ':' or '-'"
        " between digits allowed; the key is derived with the school's site key",
    )
    card_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> CardIn:
        if (self.uid is None) == (self.card_key is None):
            raise ValueError("give exactly one of uid and card_key")
        return self


class RevokeIn(Input):
    reason: Literal["lost", "stolen", "damaged", "left", "other"] = "lost"


class CardOut(BaseModel):
    card_key: str
    person_id: int
    issued_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None


@router.get("/people/{person_id}/cards", response_model=Page[CardOut], tags=["cards"])
def list_cards(conn: ConnDep, p: CardReader, pg: PageDep, person_id: IdPath) -> Page[CardOut]:
    _visible(conn, p, person_id)
    total, rows = store.page(
        conn,
        "cards",
        [("t.person_id = %s", person_id)],
        order="issued_at, card_key",
        limit=pg.limit,
        offset=pg.offset,
    )
    return page_of(CardOut, total, pg.limit, pg.offset, rows)


@router.post("/people/{person_id}/cards", response_model=CardOut, status_code=201, tags=["cards"])
def add_card(conn: ConnDep, p: SchoolAdmin, person_id: IdPath, body: CardIn) -> CardOut:
    _visible(conn, p, person_id)
    row = domain.add_card(conn, p, person_id, uid_hex=body.uid, card_key=body.card_key)
    return CardOut.model_validate(row)


@router.post("/cards/{card_key}/revoke", response_model=CardOut, tags=["cards"])
def revoke_card(conn: ConnDep, p: CardRevoker, card_key: CardKeyPath, body: RevokeIn) -> CardOut:
    """Report a lost (stolen, damaged) card: it leaves the next whitelist. 409 if already
    revoked."""
    card = store.get(conn, "cards", card_key, key_col="card_key")
    try:
        scope.require_person(conn, p, int(card["person_id"]))
    except NotFound:
        raise NotFound(f"card {card_key} not found") from None
    return CardOut.model_validate(domain.revoke_card(conn, p, card_key, body.reason))


# ---- guardians ----------------------------------------------------------------------------
class GuardianLinkIn(Input):
    guardian_id: RefId
    relation: Literal["parent", "legal_representative", "other"] = "parent"


class GuardianLinkOut(BaseModel):
    guardian_id: int
    person_id: int
    relation: str
    email: str
    full_name: str


@router.get(
    "/people/{person_id}/guardians", response_model=Page[GuardianLinkOut], tags=["guardians"]
)
def list_guardians(
    conn: ConnDep, p: SchoolAdmin, pg: PageDep, person_id: IdPath
) -> Page[GuardianLinkOut]:
    _visible(conn, p, person_id)
    total, rows = domain.guardians_of(conn, person_id, pg.limit, pg.offset)
    return page_of(GuardianLinkOut, total, pg.limit, pg.offset, rows)


@router.post(
    "/people/{person_id}/guardians",
    response_model=GuardianLinkOut,
    status_code=201,
    tags=["guardians"],
)
def link_guardian(
    conn: ConnDep, p: SchoolAdmin, person_id: IdPath, body: GuardianLinkIn
) -> GuardianLinkOut:
    _visible(conn, p, person_id)
    row = domain.link_guardian(conn, p, person_id, body.guardian_id, body.relation)
    return GuardianLinkOut.model_validate(row)


@router.delete("/people/{person_id}/guardians/{guardian_id}", status_code=204, tags=["guardians"])
def unlink_guardian(conn: ConnDep, p: SchoolAdmin, person_id: IdPath, guardian_id: IdPath) -> None:
    _visible(conn, p, person_id)
    domain.unlink_guardian(conn, p, person_id, guardian_id)


# ---- meal eligibility ---------------------------------------------------------------------
class EligibilityIn(Input):
    category_id: RefId
    valid_from: IsoDate
    valid_until: IsoDate | None = None

    @model_validator(mode="after")
    def _order(self) -> EligibilityIn:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class EligibilityOut(BaseModel):
    id: int
    person_id: int
    category_id: int
    valid_from: date
    valid_until: date | None
    granted_by: int | None
    created_at: datetime


@router.get("/people/{person_id}/eligibility", response_model=Page[EligibilityOut], tags=["meals"])
def list_eligibility(
    conn: ConnDep, p: PeopleReader, pg: PageDep, person_id: IdPath
) -> Page[EligibilityOut]:
    _visible(conn, p, person_id)
    total, rows = store.page(
        conn,
        "meal_eligibility",
        [("t.person_id = %s", person_id)],
        order="valid_from DESC, id DESC",
        limit=pg.limit,
        offset=pg.offset,
    )
    return page_of(EligibilityOut, total, pg.limit, pg.offset, rows)


@router.post(
    "/people/{person_id}/eligibility",
    response_model=EligibilityOut,
    status_code=201,
    tags=["meals"],
)
def set_eligibility(
    conn: ConnDep, p: SchoolAdmin, person_id: IdPath, body: EligibilityIn
) -> EligibilityOut:
    """Put the person in a meal category of their school (free / reduced / paid); the
    category's code becomes the whitelist's meal category."""
    _visible(conn, p, person_id)
    row = domain.set_eligibility(
        conn, p, person_id, body.category_id, body.valid_from, body.valid_until
    )
    return EligibilityOut.model_validate(row)


# ---- allergen restrictions ----------------------------------------------------------------
class RestrictionIn(Input):
    allergens: list[Allergen] = Field(max_length=16)
    note: text(0, 1000) = ""  # type: ignore[valid-type]


class RestrictionOut(BaseModel):
    person_id: int
    allergens: list[str] = Field(description="what the canteen board blocks now")
    allergen_mask: int
    note: str
    set_by: int | None
    updated_at: datetime | None
    state: Literal["none", "confirmed", "unconfirmed", "removal_pending"] = Field(
        description="confirmed by the school; changed by a guardian since; or a guardian's"
        " removal waiting for the school (D28-G)"
    )
    requested_allergens: list[str] | None = Field(
        description="the guardian's wanted list while a removal waits for the school"
    )
    requested_by: int | None
    requested_at: datetime | None
    confirmed_by: int | None
    confirmed_at: datetime | None


class RestrictionSeen(Input):
    allergens: list[Allergen] = Field(
        max_length=16, description="the list the school saw: the requested one when a removal"
        " waits, else the enforced one (a change made meanwhile is 409)"
    )


@router.get(
    "/people/{person_id}/restrictions", response_model=RestrictionOut, tags=["restrictions"]
)
def get_restrictions(conn: ConnDep, p: RestrictionReader, person_id: IdPath) -> RestrictionOut:
    _visible(conn, p, person_id)
    return RestrictionOut.model_validate(restrictions.restrictions_of(conn, person_id))


@router.put(
    "/people/{person_id}/restrictions", response_model=RestrictionOut, tags=["restrictions"]
)
def set_restrictions(
    conn: ConnDep, p: GuardianOrAdmin, person_id: IdPath, body: RestrictionIn
) -> RestrictionOut:
    """A guardian blocks dishes with these allergens for their child; the canteen reader
    enforces it (offline too) through the whitelist's allergen mask. What a guardian adds is
    blocked at once; what a guardian removes stays blocked until the school confirms
    (``state`` ``removal_pending``, D28-G). A platform admin's list takes effect as given."""
    _visible(conn, p, person_id)
    row = restrictions.change(conn, p, person_id, list(body.allergens), body.note)
    return RestrictionOut.model_validate(row)


@router.post(
    "/people/{person_id}/restrictions/confirm",
    response_model=RestrictionOut,
    tags=["restrictions"],
)
def confirm_restrictions(
    conn: ConnDep, p: SchoolAdmin, person_id: IdPath, body: RestrictionSeen
) -> RestrictionOut:
    """The school confirms the list it saw: a guardian's pending removal takes effect."""
    _visible(conn, p, person_id)
    return RestrictionOut.model_validate(restrictions.confirm(conn, p, person_id, body.allergens))


@router.post(
    "/people/{person_id}/restrictions/decline",
    response_model=RestrictionOut,
    tags=["restrictions"],
)
def decline_restrictions(
    conn: ConnDep, p: SchoolAdmin, person_id: IdPath, body: RestrictionSeen
) -> RestrictionOut:
    """The school keeps blocking what a guardian asked to remove (409 if nothing waits)."""
    _visible(conn, p, person_id)
    return RestrictionOut.model_validate(restrictions.decline(conn, p, person_id, body.allergens))
