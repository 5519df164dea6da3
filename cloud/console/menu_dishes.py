"""The console's dish catalogue (issue #15 "Menu planner", D28-D): a school's dishes with names in
kk/ru/en, price, allergens and a photo; school admins add and change them, the menu planners
(canteen operators too) read them.

Writes go through cloud/domain/dishes.py, the functions behind ``POST/PATCH /api/v1/dishes``
and ``PUT /api/v1/dishes/{id}/photo``, after the API's own request models checked the fields.
Everything is checked before anything is written: a refused photo keeps nothing, not even the
dish's other changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from cloud.api.canteen import DishIn, DishPatch
from cloud.api.deps import ConnDep, MenuPlanner, SchoolAdmin, SettingsDep, roles_of
from cloud.api.dish_photos import read_upload
from cloud.api.models import IdPath
from cloud.auth.principal import Principal
from cloud.console import i18n
from cloud.console.guard import ConsoleUser, check_csrf, require_role
from cloud.console.menu_text import ALLERGEN_NAMES, FIELD_ERRORS, PHOTO_ERRORS, money
from cloud.console.pages import _lang, _nav, _school_choice
from cloud.console.web import render
from cloud.domain import dish_photos, dishes
from cloud.domain.allergens import ALLERGENS
from cloud.domain.errors import Invalid, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
READERS = roles_of(MenuPlanner)  # who plans menus reads the catalogue (the API: CanteenReader)
WRITERS = roles_of(SchoolAdmin)
Text = Annotated[str, Form(max_length=400)]
Photo = Annotated[UploadFile | None, File()]


def _rows(conn: ConnDep, lang: str, school: str) -> list[dict[str, Any]]:
    out = []
    for d in dishes.of_school(conn, school):
        names = [
            i18n.gettext(lang, ALLERGEN_NAMES[a]) for a in d["allergens"] if a in ALLERGEN_NAMES
        ]
        thumb = dish_photos.thumb_url(d["photo_url"])
        out.append({**d, "price_label": money(lang, d["price"]), "thumb": thumb,
                    "allergen_labels": names})  # fmt: skip
    return out


def _page(
    request: Request, conn: ConnDep, user: Principal, lang: str, school: str, schools: list,
    form: dict[str, Any], errors: list[str], status: int = 200, done: str | None = None,
) -> Response:  # fmt: skip
    return render(request, "menu_dishes.html", lang, status_code=status, user=user,
                  nav=_nav(user), schools=schools, school=school, rows=_rows(conn, lang, school),
                  form=form, errors=errors, allergens=_allergen_choices(lang), done=done,
                  can_edit=user.role in WRITERS)  # fmt: skip


def _allergen_choices(lang: str) -> list[tuple[str, str]]:
    return [(a, i18n.gettext(lang, ALLERGEN_NAMES[a])) for a in ALLERGENS]


def _not_found(request: Request, user: Principal, lang: str) -> Response:
    return render(request, "not_found.html", lang, status_code=404, user=user, nav=_nav(user))


@router.get("/menu/dishes")
def dishes_page(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    school: Annotated[str | None, Query(max_length=64)] = None,
    done: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    require_role(user, READERS)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school_choice(conn, user, school or None)
    except NotFound:
        return _not_found(request, user, lang)
    if shown is None:
        return _not_found(request, user, lang)
    return _page(request, conn, user, lang, shown, schools, {}, [], done=done)


def _checked(
    lang: str, fields: dict[str, Any], photo: UploadFile | None, model: type[Any]
) -> tuple[Any, dish_photos.Prepared | None, list[str]]:
    """The API's model of the fields and the prepared photo, or the page's messages."""
    errors: list[str] = []
    body = None
    try:
        body = model(**fields)
    except ValidationError as e:
        seen = []
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            if name in FIELD_ERRORS and name not in seen:
                seen.append(name)
                errors.append(i18n.gettext(lang, FIELD_ERRORS[name]))
        if not errors:
            errors.append(i18n.gettext(lang, FIELD_ERRORS["price"]))
    prepared = None
    if photo is not None and photo.filename:
        try:
            prepared = dish_photos.prepare(read_upload(photo))
        except Invalid as e:
            errors.append(i18n.gettext(lang, PHOTO_ERRORS.get(e.msg, e.msg)))
    return body, prepared, errors


def _fields(name_kk: str, name_ru: str, name_en: str, price: str, allergen: list[str]) -> dict:
    # a comma is the decimal sign in kk and ru: 350,50 is 350.50
    return {"name_kk": name_kk, "name_ru": name_ru, "name_en": name_en,
            "price": price.strip().replace(",", ".").replace(" ", "").replace("\u00a0", ""),
            "allergens": allergen}  # fmt: skip


@router.post("/menu/dishes")
def add_dish(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    s: SettingsDep,
    school: Annotated[str, Form(max_length=64)] = "",
    name_kk: Text = "",
    name_ru: Text = "",
    name_en: Text = "",
    price: Annotated[str, Form(max_length=40)] = "",
    allergen: Annotated[list[str], Form(max_length=16)] = [],  # noqa: B006 (FastAPI copies)
    photo: Photo = None,
) -> Response:
    require_role(user, WRITERS)
    lang = _lang(request, conn, user)
    try:
        schools, shown = _school_choice(conn, user, school or None)
    except NotFound:
        return _not_found(request, user, lang)
    if shown is None:
        return _not_found(request, user, lang)
    fields = _fields(name_kk, name_ru, name_en, price, allergen)
    body, prepared, errors = _checked(lang, {**fields, "school_id": shown}, photo, DishIn)
    if errors:
        return _page(request, conn, user, lang, shown, schools, fields, errors, status=422)
    row = dishes.create(conn, user, body.model_dump())
    if prepared is not None:
        dishes.set_photo(conn, user, int(row["id"]), prepared, s.menu_days_ahead)
    return RedirectResponse(f"/menu/dishes?school={shown}&done=added", status_code=303)


@router.get("/menu/dishes/{dish_id}")
def dish_page(request: Request, conn: ConnDep, user: ConsoleUser, dish_id: IdPath) -> Response:
    require_role(user, WRITERS)
    lang = _lang(request, conn, user)
    try:
        dish = dishes.in_scope(conn, user, dish_id)
    except NotFound:
        return _not_found(request, user, lang)
    return _dish_form(request, user, lang, dish, dict(dish), [])


def _dish_form(
    request: Request, user: Principal, lang: str, dish: dict[str, Any], form: dict[str, Any],
    errors: list[str], status: int = 200,
) -> Response:  # fmt: skip
    return render(request, "menu_dish.html", lang, status_code=status, user=user, nav=_nav(user),
                  dish=dish, form=form, errors=errors, allergens=_allergen_choices(lang),
                  thumb=dish_photos.thumb_url(dish["photo_url"]))  # fmt: skip


@router.post("/menu/dishes/{dish_id}")
def change_dish(
    request: Request,
    conn: ConnDep,
    user: ConsoleUser,
    s: SettingsDep,
    dish_id: IdPath,
    name_kk: Text = "",
    name_ru: Text = "",
    name_en: Text = "",
    price: Annotated[str, Form(max_length=40)] = "",
    allergen: Annotated[list[str], Form(max_length=16)] = [],  # noqa: B006 (FastAPI copies)
    active: Annotated[str, Form(max_length=5)] = "",
    remove_photo: Annotated[str, Form(max_length=5)] = "",
    photo: Photo = None,
) -> Response:
    require_role(user, WRITERS)
    lang = _lang(request, conn, user)
    try:
        dish = dishes.in_scope(conn, user, dish_id)
    except NotFound:
        return _not_found(request, user, lang)
    fields = _fields(name_kk, name_ru, name_en, price, allergen)
    fields["active"] = active == "on"
    if remove_photo == "on":
        fields["photo_url"] = None
    body, prepared, errors = _checked(lang, fields, photo, DishPatch)
    if errors:
        return _dish_form(request, user, lang, dish, fields, errors, status=422)
    given = body.model_dump(exclude_unset=True)
    dishes.update(conn, user, dish_id, given, s.menu_days_ahead)
    if prepared is not None:
        dishes.set_photo(conn, user, dish_id, prepared, s.menu_days_ahead)
    school = dish["school_id"]
    return RedirectResponse(f"/menu/dishes?school={school}&done=changed", status_code=303)
