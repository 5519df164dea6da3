"""FastAPI dependencies, as ``Annotated`` aliases routes can use as parameter types.

Every role rule of the API is one alias here (``allow(...)``); routes name the alias, so the
table of who may call what reads from this module and the route signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import OAuth2PasswordBearer

from cloud.api.ratelimit import RateLimits
from cloud.auth.principal import ANONYMOUS_READER, Principal, Role
from cloud.auth.throttle import LoginThrottle
from cloud.auth.token_cache import TokenCache
from cloud.db.pool import Connections
from cloud.settings import Settings

TOKEN_URL = "/api/v1/auth/token"
# The API's queries are short: PostgreSQL's JIT compiled each costly-looking one anew, ~25-30 ms
# of a 55 ms list across 200 schools (bench events_list, D23), more than it ever saved.
API_SESSION_OPTIONS = "-c jit=off"


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_conn(request: Request) -> Iterator[Any]:
    """One connection and one transaction per request: committed when the route returns,
    rolled back when it raises (so a rejected request changes nothing). ``scope="function"``
    ends it before the response is sent, so a client never reads ahead of the commit. From the
    app's pool (cloud/db/pool.py): no connection within db_pool_timeout_s is 503 + Retry-After."""
    connections: Connections = request.app.state.connections
    with connections.connection() as conn:
        yield conn


def get_read_conn(request: Request) -> Iterator[Any]:
    """A read-only transaction for reads that may lag a little behind the primary (report
    downloads, live cross-checks): on ``database_read_url`` (a standby) when one is set, else
    on the primary's pool (D29-D). Read-only even on the primary, so a route that took this
    dependency and writes fails in every test, not only against a standby."""
    connections: Connections = request.app.state.read_connections
    with connections.connection() as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        yield conn


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_login_throttle(request: Request) -> LoginThrottle:
    """The app's login throttle (cloud/auth/throttle.py); tests override this dependency to
    move its clock."""
    throttle: LoginThrottle | None = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = request.app.state.login_throttle = LoginThrottle()
    return throttle


LoginThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]
ConnDep = Annotated[psycopg.Connection[Any], Depends(get_conn, scope="function")]
ReadConnDep = Annotated[psycopg.Connection[Any], Depends(get_read_conn, scope="function")]

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


def _unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="not authenticated: log in at " + TOKEN_URL,
        headers={"WWW-Authenticate": "Bearer"},
    )


# Requests that only read may use a cached token lookup; the others read it fresh (D27-D).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_principal(conn: ConnDep, token: TokenDep, request: Request) -> Principal:
    """The caller, from the process's token cache or the database (cloud/auth/token_cache.py);
    then the per-account rate limit (cloud/api/ratelimit.py: 429 + Retry-After). A request
    that may write reads it from the database (a logout too: the next read is fresh)."""
    if token is None:
        raise _unauthorized()
    cache: TokenCache = request.app.state.token_cache
    principal = cache.principal(conn, token, fresh=request.method not in READ_METHODS)
    if principal is None:
        raise _unauthorized()
    rate_limits: RateLimits = request.app.state.rate_limits
    rate_limits.check_account(principal.user_id)
    return principal


EVENT_READERS = ("platform_admin", "district_authority", "school_admin", "guardian", "student")


def get_events_reader(
    conn: ConnDep, token: TokenDep, settings: SettingsDep, request: Request
) -> Principal:
    """Like get_principal, but with settings.auth_required False a request without a token reads
    every event (the demo's live page; D8)."""
    if token is None and not settings.auth_required:
        return ANONYMOUS_READER
    principal = get_principal(conn, token, request)
    if principal.role not in EVENT_READERS:
        raise HTTPException(status_code=403, detail=f"role {principal.role} may not read events")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
EventsReaderDep = Annotated[Principal, Depends(get_events_reader)]


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise HTTPException(status_code=403, detail=f"role {principal.role} may not do this")
        return principal

    check.__name__ = "allow_" + "_".join(roles)
    check.roles = roles  # type: ignore[attr-defined]  # read by roles_of()
    return check


def roles_of(alias: Any) -> tuple[Role, ...]:
    """The roles a role alias below lets in (``Annotated[Principal, Depends(allow(...))]``):
    console pages show a part of a page to exactly the roles whose API call returns it."""
    roles: tuple[Role, ...] = alias.__metadata__[0].dependency.roles
    return roles


# The role table. Object scope (own school, own district, own children) is checked on top by
# cloud.auth.scope.
PlatformAdmin = Annotated[Principal, Depends(allow("platform_admin"))]
OrgReader = Annotated[Principal, Depends(allow("platform_admin", "district_authority"))]
SchoolReader = Annotated[
    Principal,
    Depends(
        allow(
            "platform_admin",
            "district_authority",
            "school_admin",
            "canteen_operator",
            "technician",
        )
    ),
]
SchoolAdmin = Annotated[Principal, Depends(allow("platform_admin", "school_admin"))]
UserManager = SchoolAdmin
ClassReader = Annotated[
    Principal, Depends(allow("platform_admin", "district_authority", "school_admin"))
]
PeopleReader = Annotated[
    Principal,
    Depends(
        allow(
            "platform_admin",
            "district_authority",
            "school_admin",
            "canteen_operator",
            "guardian",
        )
    ),
]
CardReader = Annotated[Principal, Depends(allow("platform_admin", "school_admin", "guardian"))]
CardRevoker = CardReader  # a guardian reports their child's lost card
# the devices' readers and writers (also the console's fleet pages, cloud/console/fleet.py)
DEVICE_READERS: tuple[Role, ...] = ("platform_admin", "district_authority", "school_admin",
                                    "technician")  # fmt: skip
DEVICE_WRITERS: tuple[Role, ...] = ("platform_admin", "school_admin", "technician")
DeviceReader = Annotated[Principal, Depends(allow(*DEVICE_READERS))]
DeviceWriter = Annotated[Principal, Depends(allow(*DEVICE_WRITERS))]
# dishes, meal categories, ratings, the dated menu: for guardians and students too (D28-O)
CanteenReader = Annotated[
    Principal,
    Depends(allow("platform_admin", "district_authority", "school_admin", "canteen_operator",
                  "guardian", "student")),
]  # fmt: skip
# Who plans the dated menu that goes to the canteen boards (D27-A).
MenuPlanner = Annotated[
    Principal, Depends(allow("platform_admin", "school_admin", "canteen_operator"))
]
RestrictionReader = Annotated[
    Principal,
    Depends(allow("platform_admin", "school_admin", "canteen_operator", "guardian")),
]
GuardianOrAdmin = Annotated[Principal, Depends(allow("platform_admin", "guardian"))]
# who rates a served dish: a guardian for their child, a student for themself (D28-O)
Rater = Annotated[Principal, Depends(allow("platform_admin", "guardian", "student"))]
# Who receives notifications: guardians (taps, low balance) and school admins (report reminders).
PushSubscriber = Annotated[Principal, Depends(allow("guardian", "school_admin"))]
ConsentKeeper = Annotated[Principal, Depends(allow("platform_admin", "school_admin", "guardian"))]
AuditReader = SchoolAdmin


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def get_page(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> PageParams:
    return PageParams(limit, offset)


PageDep = Annotated[PageParams, Depends(get_page)]
