"""Syntax checks for payload fields: countries, languages, URLs, domains, addresses, hashes.

Each check takes a string and returns it (normalised where said) or raises
``ValueError`` with a reason in words; pydantic turns that into an error naming
the field. No network, no clock.
"""

from __future__ import annotations

import re
import socket
from functools import lru_cache
from urllib.parse import urlsplit


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: ISO 3166-1 alpha-2: every officially assigned code.
COUNTRIES = _words(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """
)

#: The EU Member States (ISO codes: Greece is GR) and the other EEA states.
EU = _words("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK")
EEA = EU | {"IS", "LI", "NO"}

#: ISO 639-1 two-letter language codes.
LANGUAGES = _words(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht
    hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky
    la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny
    oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss
    st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo
    za zh zu
    """
)

HASH_HEX_LENGTHS = {"MD5": 32, "SHA1": 40, "SHA256": 64, "SHA512": 128}
URL_SCHEMES = frozenset({"http", "https", "ftp"})

# An ASCII host name of two or more labels, the last not all digits (checked apart).
_ASCII_DOMAIN = re.compile(
    r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)[a-z0-9-]{1,63}(?<!-)\.?\Z", re.IGNORECASE
)
_BAD_URL_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}\Z")
_WALLET = re.compile(r"[A-Za-z0-9]{20,128}\Z")
_CURRENCY = re.compile(r"[A-Z0-9]{2,10}\Z")
_LIST_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code in upper case."""
    if value not in COUNTRIES:
        if value.upper() in COUNTRIES:
            raise ValueError(f"country code {value!r} must be upper case")
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value


def language(value: str) -> str:
    """An ISO 639-1 code in lower case."""
    if value not in LANGUAGES:
        raise ValueError(f"{value!r} is not an ISO 639-1 language code (two lower-case letters)")
    return value


def domain(value: str) -> str:
    """A domain name of at least two labels; internationalised names allowed (IDNA)."""
    if value.isascii():
        if len(value) > 254 or not _ASCII_DOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid fully qualified domain name")
        if value.rstrip(".").rpartition(".")[2].isdigit():
            raise ValueError(f"{value!r} has a numeric top-level label")
        return value
    problem = _idn_problem(value)
    if problem:
        raise ValueError(problem)
    return value


@lru_cache(maxsize=4096)
def _idn_problem(value: str) -> str | None:
    """Why an internationalised name is not a domain name, or None (the codec is slow)."""
    name = value[:-1] if value.endswith(".") else value
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return f"{value!r} is not a valid domain name"
    try:
        domain(ascii_name)
    except ValueError as exc:
        return f"{value!r}: {exc}"
    return None


def ip_address(value: str) -> str:
    """An IPv4 (dotted quad, no leading zeros) or IPv6 address."""
    if not _is_ip(value):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address")
    return value


def _is_ip(value: str) -> bool:
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        socket.inet_pton(family, value)
    except (OSError, ValueError):  # ValueError: embedded NUL
        return False
    return True


def _host(host: str) -> None:
    if (host[0].isdigit() or ":" in host) and _is_ip(host):
        return
    domain(host)


# The common shape of an indicator URL: scheme, an ASCII host name or IPv4 address, an
# optional port, then anything (control characters and spaces are refused before). Such a
# URL is checked without urlsplit (a third of an alert's validation time); anything else
# (user info, IPv6 hosts, empty ports, odd schemes) takes the general path.
_SIMPLE_URL = re.compile(
    r"(?:[hH][tT][tT][pP][sS]?|[fF][tT][pP])://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(?:[/?#].*)?\Z",
    re.DOTALL,
)


def url(value: str) -> str:
    """An absolute http, https or ftp URL with a host (a domain name or an IP address)."""
    if len(value) > 4096:
        raise ValueError("a URL has at most 4096 characters")
    if _BAD_URL_CHAR.search(value):
        raise ValueError("a URL has no spaces or control characters")
    simple = _SIMPLE_URL.match(value)
    if simple is not None and (simple[2] is None or int(simple[2]) <= 65535):
        _host(simple[1].lower())
        return value
    return _general_url(value)


def _general_url(value: str) -> str:
    """:func:`url` for every shape, through urlsplit."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in URL_SCHEMES:
        raise ValueError(f"URL scheme must be http, https or ftp, not {parts.scheme!r}")
    if not host:
        raise ValueError(f"URL {value!r} has no host")
    _host(host)
    return value


def email(value: str) -> str:
    """An e-mail address: local part @ domain name."""
    local, at, dom = value.rpartition("@")
    if not at or not _EMAIL_LOCAL.match(local) or local.startswith(".") or ".." in local:
        raise ValueError(f"{value!r} is not an e-mail address")
    domain(dom)
    return value


def file_hash(value: str, algorithm: str) -> str:
    """A hex digest of the algorithm's length."""
    want = HASH_HEX_LENGTHS[algorithm]
    if len(value) != want or not _HEX.match(value):
        raise ValueError(f"a {algorithm} digest is {want} hex digits")
    return value


def wallet(value: str) -> str:
    """A cryptocurrency address: 20 to 128 letters and digits."""
    if not _WALLET.match(value):
        raise ValueError("a wallet address is 20 to 128 letters and digits")
    return value


def currency(value: str) -> str:
    """A currency ticker: 2 to 10 upper-case letters or digits (BTC, XMR, USDT)."""
    if not _CURRENCY.match(value):
        raise ValueError(f"{value!r} is not a currency ticker (2-10 upper-case letters/digits)")
    return value


def list_id(value: str) -> str:
    """A blocking-list id: lower-case letters, digits, dot, dash, underscore; at most 64."""
    if not _LIST_ID.match(value):
        raise ValueError(
            f"{value!r} is not a list id (lower-case letters, digits, '.', '-', '_'; 1-64)"
        )
    return value


def single_line(value: str) -> str:
    """Text without control characters (handles, platforms, references)."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value
