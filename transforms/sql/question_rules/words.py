"""Words: schema identifiers as English words (``billingcountry`` -> "billing country"),
plurals and the small list helpers every phrase of a question is built with.

The bottom layer of :mod:`transforms.sql.question_rules`: it knows nothing of SQL trees.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[\W_]+")
_ABBREVIATIONS = {
    "addr": "address",
    "amt": "amount",
    "avg": "average",
    "cnt": "count",
    "cust": "customer",
    "desc": "description",
    "dt": "date",
    "num": "number",
    "pct": "percent",
    "qty": "quantity",
    "ts": "timestamp",
    "tx": "transaction",
    "txn": "transaction",
}
_INVARIANT_NOUNS = frozenset(
    {"data", "metadata", "information", "equipment", "news", "series", "species", "staff"}
)
_IRREGULAR_PLURALS = {
    "child": "children",
    "criterion": "criteria",
    "man": "men",
    "person": "people",
    "status": "statuses",
    "woman": "women",
}
_IRREGULAR_SINGULARS = {plural: singular for singular, plural in _IRREGULAR_PLURALS.items()}
_VOWELS = frozenset("aeiou")


# Words that schema identifiers are commonly glued from. Normalization folds unquoted
# identifiers to lowercase (``BillingCountry`` becomes ``billingcountry``), so the case
# boundaries are gone; a glued word made entirely of these (plus a plural 's'/'es', and
# "at", "by", "id", "ip", "no" and "up" as short pieces) is split back. Words that are
# themselves compounds people write as one ('password', 'timestamp', 'username', 'backup')
# are listed so they stay whole.
_GLUE_WORDS = frozenset("""
access account accepted action active activity actual add added address admin advisor after
backup cleanup followup lookup markup pickup popup rollup setup signup startup
age agent air aircraft airline airport album allow amount answer answered approval approved
area arrival artist asset assigned assignment audit author available average award back
badge balance bank base bed begin bill billing birth block body book booking border box
brand budget business buy by call campaign cancel cancelled capacity capital car card
carrier cart case cash category cell change channel charge check child cite cited citation
city class clear click client close closed code college color column comment commission
community company complete completed composer condition conference contact content
continent contract cost count country county coupon course create created creation credit
currency current customer cycle daily data database date day deadline default degree
delete deleted delivery department deposit description design destination detail device
diagnosis discount display distance doctor document domain down drug due duration earn
edit edited editor education effective election email employee end ended entity entry
episode error estimated event exam exchange expense expiration expire expiry external
extra facility fail failed family fare favorite fax fee feedback field file final first
flag flight food form format free freight frequency from full gender genre given goal
grade graduation group guest hash head height hire history holder home hotel hour hours
image income industry info information inside instructor insurance interest internal
inventory invoice issue item job join joined journal key keyword kind label language last
latitude lead leave length level license limit line link list load loan local location
lock login logo long longitude lost machine mail main manager manufacturer margin market
match max media medium member membership merchant message method middle migrated min
minimum mobile mode model modified month mountain movie name net network new next node
note notification number object offer office old one open opened order organization
origin original out owned owner page paid paper parent part partner password path
patient pay payment pending percent period person phone photo picture place plan
platform play player playlist point policy population position post postal price
primary priority private product profile program project promotion public publication
published purchase quantity question rank rate rating reason receipt received receiver
record reference region registration related release removed rental reorder reply
report reported reputation request required resource response restaurant result
return revenue review reviewer revision role room route rule sale sales salary schedule
school score season seat second section segment sender sent sequence service session
setting share ship shipped shipper shipping short size skill snapshot source speed
staff stage start state status step stock stop store street student subject
submission supplier support symbol tag target task tax team term territory test text
ticket time timestamp title token top total track transaction transfer treatment trip
type unit up update updated upload url user username valid value vendor venue
verified version video view views visit vote warehouse website week weight width work
writer year zip zone
""".split())
_GLUE_SHORT = frozenset({"at", "by", "id", "ip", "no", "up"})


def _split_glued(word: str) -> Optional[list[str]]:
    """Split an all-lowercase glued word into known words, fewest pieces first; None if it is not one.

    >>> _split_glued("billingcountry"), _split_glued("owneruserid"), _split_glued("milliseconds")
    (['billing', 'country'], ['owner', 'user', 'id'], None)
    """
    if len(word) < 5 or word in _GLUE_WORDS:
        return None
    best: list[Optional[list[str]]] = [None] * (len(word) + 1)
    best[0] = []
    for end in range(2, len(word) + 1):
        for start in range(max(0, end - 14), end - 1):
            head = best[start]
            if head is None:
                continue
            piece = word[start:end]
            if _is_glue_piece(piece) and (best[end] is None or len(head) + 1 < len(best[end])):
                best[end] = head + [piece]
    pieces = best[len(word)]
    return pieces if pieces is not None and len(pieces) > 1 else None


def _is_glue_piece(piece: str) -> bool:
    if piece in _GLUE_SHORT or (len(piece) >= 3 and piece in _GLUE_WORDS):
        return True
    return len(piece) >= 4 and piece.endswith("s") and (
        piece[:-1] in _GLUE_WORDS or (piece.endswith("es") and piece[:-2] in _GLUE_WORDS)
    )


@lru_cache(maxsize=8192)
def humanize(identifier: str) -> str:
    """Turn a SQL identifier into lowercase words.

    snake_case and CamelCase are split, a run of capitals is one word, a few common
    abbreviations are spelled out, and an all-lowercase word glued from common schema words
    (what normalization makes of ``BillingCountry``) is split back; other single words are
    left alone.

    >>> humanize("ArtistId"), humanize("artistid"), humanize("first_name")
    ('artist id', 'artist id', 'first name')
    >>> humanize("DOMAIN"), humanize("sbTxCustId"), humanize("XMLHttpRequest")
    ('domain', 'sb transaction customer id', 'xml http request')
    >>> humanize("billingcountry"), humanize("milliseconds"), humanize("posttypeid")
    ('billing country', 'milliseconds', 'post type id')
    """
    spaced = _NOT_WORD.sub(" ", identifier)
    if not spaced.isupper():
        spaced = _CAMEL_BOUNDARY.sub(" ", spaced)
    words: list[str] = []
    for word in spaced.lower().split():
        glued = _split_glued(word) if word not in _ABBREVIATIONS else None
        words.extend(glued if glued else [word])
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words) or "value"


_PARTICIPLES = frozenset({"made", "done", "given", "taken", "sent", "paid", "sold", "held"})


def _split_last(phrase: str) -> tuple[str, str]:
    head, _, last = phrase.rpartition(" ")
    return (head + " " if head else ""), last


def _split_participle(phrase: str) -> tuple[str, str]:
    """('payments', ' received') for 'payments received': inflect the noun, not the participle."""
    head, last = _split_last(phrase)
    participle = last in _PARTICIPLES or (
        last.endswith("ed") and len(last) > 4 and not last.endswith("eed")
    )
    if head and participle:
        return head[:-1], " " + last
    return phrase, ""


@lru_cache(maxsize=4096)
def pluralize(phrase: str) -> str:
    """Plural of a lowercase noun phrase (its last noun), with a tiny rule set.

    Words that already look plural are kept; a trailing participle is left alone.

    >>> [pluralize(w) for w in ("artist", "invoice line", "business", "category", "people")]
    ['artists', 'invoice lines', 'businesses', 'categories', 'people']
    >>> pluralize("milliseconds"), pluralize("box"), pluralize("payment received")
    ('milliseconds', 'boxes', 'payments received')
    """
    noun_phrase, participle = _split_participle(phrase)
    head, word = _split_last(noun_phrase)
    if word in _INVARIANT_NOUNS or word in _IRREGULAR_SINGULARS:
        plural = noun_phrase
    elif word in _IRREGULAR_PLURALS:
        plural = head + _IRREGULAR_PLURALS[word]
    elif word.endswith(("ss", "us", "x", "z", "ch", "sh")):
        plural = noun_phrase + "es"
    elif word.endswith("is") and len(word) > 3:
        plural = head + word[:-2] + "es"
    elif word.endswith("s"):
        plural = noun_phrase
    elif word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        plural = head + word[:-1] + "ies"
    else:
        plural = noun_phrase + "s"
    return plural + participle


@lru_cache(maxsize=4096)
def singularize(phrase: str) -> str:
    """Singular of a lowercase noun phrase (its last noun), the inverse of :func:`pluralize`.

    >>> [singularize(w) for w in ("tracks", "users", "categories", "business", "addresses")]
    ['track', 'user', 'category', 'business', 'address']
    >>> singularize("artist"), singularize("people"), singularize("payments made")
    ('artist', 'person', 'payment made')
    """
    noun_phrase, participle = _split_participle(phrase)
    head, word = _split_last(noun_phrase)
    if word in _INVARIANT_NOUNS or word in _IRREGULAR_PLURALS:
        singular = noun_phrase
    elif word in _IRREGULAR_SINGULARS:
        singular = head + _IRREGULAR_SINGULARS[word]
    elif word.endswith("ies") and len(word) > 4:
        singular = head + word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes", "zes")):
        singular = head + word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 2:
        singular = head + word[:-1]
    else:
        singular = noun_phrase
    return singular + participle


def and_list(texts: list[str], conjunction: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(texts) <= 1:
        return texts[0] if texts else ""
    return ", ".join(texts[:-1]) + f" {conjunction} " + texts[-1]


def has_article(text: str) -> bool:
    return text.startswith(("the ", "a ", "an ", "all ", "each ", "whether ", '"')) or (
        text[:1].isdigit() or text[:1] == "-"
    )


def noun_list(texts: list[str]) -> str:
    """Join item phrases, giving bare column names a shared leading 'the'."""
    out: list[str] = []
    previous_articled = True
    for text in texts:
        articled = has_article(text)
        out.append(text if articled or not previous_articled else "the " + text)
        previous_articled = articled
    return and_list(out)


def strip_article(text: str) -> str:
    for article in ("the ", "a ", "an "):
        if text.startswith(article):
            return text[len(article) :]
    return text


def plural_phrase(text: str) -> str:
    """'the year of invoice date' -> 'years of invoice date'; 'flight id' -> 'flight ids'."""
    text = strip_article(text)
    head, sep, tail = text.partition(" of ")
    if sep and " " not in head:
        return pluralize(head) + sep + tail
    return pluralize(text)
