"""``/api/v1``: dishes (the menu), meal categories and meal ratings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StrictBool, StrictInt

from cloud.api.deps import (
    CanteenReader,
    ConnDep,
    MenuPlanner,
    PageDep,
    Rater,
    SchoolAdmin,
    SettingsDep,
)
from cloud.api.models import (
    BIGINT_MAX,
    IdPath,
    Input,
    IsoDate,
    Name,
    Page,
    PublicUrl,
    SchoolId,
    page_of,
    text,
)
from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.commands import menu as menus
from cloud.domain import dishes, ratings, store
from cloud.domain.allergens import Allergen, to_mask
from cloud.domain.errors import Invalid, NotFound

router = APIRouter(prefix="/api/v1")

RefId = Annotated[StrictInt, Field(ge=1, le=BIGINT_MAX)]
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
SchoolQuery = Annotated[str | None, Query(min_length=1, max_length=64)]


def _in_scope(conn: ConnDep, p: Principal, table: str, key: int) -> dict[str, object]:
    row = store.get(conn, table, key)
    ids = scope.school_ids(conn, p)
    if ids is not None and row["school_id"] not in ids:
        raise NotFound(f"{table.rstrip('s')} {key} not found")
    return row


# ---- dishes -------------------------------------------------------------------------------
class DishIn(Input):
    school_id: SchoolId
    name_kk: Name
    name_ru: Name
    name_en: text(0, 200) = ""  # type: ignore[valid-type]
    photo_url: PublicUrl | None = None
    price: Price
    allergens: list[Allergen] = Field(default=[], max_length=16)


class DishPatch(Input):
    name_kk: Name | None = None
    name_ru: Name | None = None
    name_en: text(0, 200) | None = None  # type: ignore[valid-type]
    photo_url: PublicUrl | None = None
    price: Price | None = None
    allergens: list[Allergen] | None = Field(default=None, max_length=16)
    active: StrictBool | None = None


class DishOut(BaseModel):
    id: int
    school_id: str
    name_kk: str
    name_ru: str
    name_en: str
    photo_url: str | None
    price: Decimal
    allergens: list[str]
    allergen_mask: int
    active: bool


@router.get("/dishes", response_model=Page[DishOut], tags=["menu"])
def list_dishes(
    conn: ConnDep,
    p: CanteenReader,
    pg: PageDep,
    school: SchoolQuery = None,
    active: bool | None = None,
    without: Annotated[
        list[Allergen] | None, Query(description="only dishes free of these allergens")
    ] = None,
) -> Page[DishOut]:
    where = [
        ("t.school_id = ANY(%s)", scope.school_ids(conn, p)),
        ("t.school_id = %s", school),
        ("t.active = %s", active),
        ("t.allergen_mask & %s = 0", to_mask(without) if without else None),
    ]
    total, rows = store.page(conn, "dishes", where, limit=pg.limit, offset=pg.offset)
    return page_of(DishOut, total, pg.limit, pg.offset, rows)


@router.post("/dishes", response_model=DishOut, status_code=201, tags=["menu"])
def create_dish(conn: ConnDep, p: SchoolAdmin, body: DishIn) -> DishOut:
    return DishOut.model_validate(dishes.create(conn, p, body.model_dump()))


@router.get("/dishes/{dish_id}", response_model=DishOut, tags=["menu"])
def get_dish(conn: ConnDep, p: CanteenReader, dish_id: IdPath) -> DishOut:
    return DishOut.model_validate(dishes.in_scope(conn, p, dish_id))


@router.patch("/dishes/{dish_id}", response_model=DishOut, tags=["menu"])
def update_dish(
    conn: ConnDep, p: SchoolAdmin, s: SettingsDep, dish_id: IdPath, body: DishPatch
) -> DishOut:
    """A dish of the planned menu that changes (its allergens, price, name) goes to the school's
    canteen boards at once, in their new menu (D27-A)."""
    given = body.model_dump(exclude_unset=True)
    return DishOut.model_validate(dishes.update(conn, p, dish_id, given, s.menu_days_ahead))


@router.delete("/dishes/{dish_id}", response_model=DishOut, tags=["menu"])
def retire_dish(conn: ConnDep, p: SchoolAdmin, dish_id: IdPath) -> DishOut:
    """Dishes keep their ratings, so they are retired (active = false), not deleted. A retired
    dish stays in the sets already planned (the kitchen plans what it cooks)."""
    return DishOut.model_validate(dishes.retire(conn, p, dish_id))


# ---- meal categories ----------------------------------------------------------------------
MealKind = Literal["free", "reduced", "paid"]


class MealCategoryIn(Input):
    school_id: SchoolId
    kind: MealKind
    name: text(1, 100)  # type: ignore[valid-type]
    price: Price


class MealCategoryPatch(Input):
    name: text(1, 100) | None = None  # type: ignore[valid-type]
    price: Price | None = None


class MealCategoryOut(BaseModel):
    id: int
    school_id: str
    kind: MealKind
    code: int = Field(description="the whitelist's meal category: 1 free, 2 reduced, 3 paid")
    name: str
    price: Decimal


def _check_price(kind: str, price: Decimal | None) -> None:
    if kind == "free" and price is not None and price != 0:
        raise Invalid("price", "a free meal category costs 0")


@router.get("/meal-categories", response_model=Page[MealCategoryOut], tags=["meals"])
def list_meal_categories(
    conn: ConnDep, p: CanteenReader, pg: PageDep, school: SchoolQuery = None
) -> Page[MealCategoryOut]:
    where = [("t.school_id = ANY(%s)", scope.school_ids(conn, p)), ("t.school_id = %s", school)]
    total, rows = store.page(conn, "meal_categories", where, limit=pg.limit, offset=pg.offset)
    return page_of(MealCategoryOut, total, pg.limit, pg.offset, rows)


@router.post("/meal-categories", response_model=MealCategoryOut, status_code=201, tags=["meals"])
def create_meal_category(conn: ConnDep, p: SchoolAdmin, body: MealCategoryIn) -> MealCategoryOut:
    scope.require_school(conn, p, body.school_id)
    _check_price(body.kind, body.price)
    row = store.insert(conn, p, "meal_categories", body.model_dump())
    return MealCategoryOut.model_validate(row)


@router.patch("/meal-categories/{category_id}", response_model=MealCategoryOut, tags=["meals"])
def update_meal_category(
    conn: ConnDep, p: SchoolAdmin, category_id: IdPath, body: MealCategoryPatch
) -> MealCategoryOut:
    row = _in_scope(conn, p, "meal_categories", category_id)
    _check_price(str(row["kind"]), body.price)
    values = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return MealCategoryOut.model_validate(
        store.update(conn, p, "meal_categories", category_id, values)
    )


# ---- ratings ------------------------------------------------------------------------------
class RatingIn(Input):
    person_id: RefId
    dish_id: RefId
    served_on: IsoDate
    score: StrictInt = Field(ge=1, le=5)
    comment: text(0, 2000) = ""  # type: ignore[valid-type]


class RatingOut(BaseModel):
    id: int
    person_id: int
    dish_id: int
    served_on: IsoDate
    score: int
    comment: str
    rated_by: int | None
    created_at: datetime


@router.get("/ratings", response_model=Page[RatingOut], tags=["ratings"])
def list_ratings(
    conn: ConnDep,
    p: CanteenReader,
    pg: PageDep,
    dish: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    person: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    since: IsoDate | None = None,
    until: IsoDate | None = None,
) -> Page[RatingOut]:
    """Guardians see their children's ratings; staff see those of their schools' dishes."""
    where: list[tuple[str, object]] = [
        ("t.dish_id = %s", dish),
        ("t.person_id = %s", person),
        ("t.served_on >= %s", since),
        ("t.served_on < %s", until),
    ]
    if p.role in scope.PERSON_SCOPED:
        where.append(("t.person_id = ANY(%s)", scope.child_ids(conn, p)))
    else:
        where.append(
            (
                "t.dish_id IN (SELECT id FROM dishes WHERE school_id = ANY(%s))",
                scope.school_ids(conn, p),
            )
        )
    total, rows = store.page(
        conn,
        "meal_ratings",
        where,
        order="served_on DESC, id DESC",
        limit=pg.limit,
        offset=pg.offset,
    )
    return page_of(RatingOut, total, pg.limit, pg.offset, rows)


@router.post("/ratings", response_model=RatingOut, status_code=201, tags=["ratings"])
def rate_meal(conn: ConnDep, p: Rater, body: RatingIn) -> RatingOut:
    """A guardian rates a dish their child was served that day (a meal receipt of the child
    names the dish or its set: cloud/domain/ratings.py); one rating per child, dish and day
    (a second is 409). A dish the child was not served is 422 and nothing is stored."""
    school = scope.require_person(conn, p, body.person_id)
    row = ratings.rate(conn, p, school, body.person_id, body.dish_id, body.served_on,
                       body.score, body.comment)  # fmt: skip
    return RatingOut.model_validate(row)


class DishWeekOut(BaseModel):
    dish_id: int
    name_kk: str
    name_ru: str
    name_en: str
    ratings: int
    average: Decimal = Field(description="the mean score, two decimals")
    lowest: int
    highest: int
    comments: int = Field(description="ratings that carry a comment")


class RatingWeekOut(BaseModel):
    school_id: str
    week: str = Field(description="the ISO week, e.g. 2026-W50")
    first_day: IsoDate
    dishes: list[DishWeekOut] = Field(description="lowest average first")


@router.get("/schools/{school_id}/ratings", response_model=RatingWeekOut, tags=["ratings"])
def school_ratings_week(
    conn: ConnDep,
    p: MenuPlanner,
    school_id: Annotated[str, Path(min_length=1, max_length=64)],
    week: Annotated[
        str | None, Query(pattern=r"^\d{4}-W\d{2}$", description="ISO week; default this week")
    ] = None,
) -> RatingWeekOut:
    """Averages of the parents' ratings per dish for one week (D28-G)."""
    scope.require_school(conn, p, school_id)
    if week is None:
        monday = ratings.monday_of(menus.school_today(conn, school_id))
    else:
        try:
            monday = date.fromisoformat(week + "-1")
        except ValueError:
            raise Invalid("week", f"{week} is not an ISO week") from None
    year, number, _ = monday.isocalendar()
    rows = ratings.weekly_averages(conn, school_id, monday)
    return RatingWeekOut(school_id=school_id, week=f"{year}-W{number:02d}", first_day=monday,
                         dishes=[DishWeekOut(**vars(r)) for r in rows])  # fmt: skip
