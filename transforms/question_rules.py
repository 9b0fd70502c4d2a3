"""Rule-based English questions for parsed SQL: the offline ``rules`` question writer.

Plain SQL logs carry no natural-language question. :func:`describe_sql` renders one from an
already-parsed sqlglot tree (any dialect), deterministically and without a model, so a
text-to-SQL pair can be built offline. The LLM question writer sits behind the same contract
later: ``tree -> question``.

How it works, in one walk over the tree:

* every ``SELECT`` gets a scope: its tables (aliases resolved to table names), the main table
  (the first one in ``FROM``) and the parent scope for correlated subqueries;
* values (columns, aggregates, arithmetic, dates, ``CASE``...) become noun phrases
  ("the average milliseconds"), conditions become phrases that read after "with"/"have"
  ("milliseconds greater than 300000");
* the parts are assembled into a template chosen by the query's shape: a count
  ("How many tracks have ...?"), an aggregate ("What is the average ... of ...?"), a grouped
  aggregate ("For each ..., what is ...?") or a listing ("List the ... of every ...."), followed by
  an ordering/limit sentence ("Show the top 5 by ..., highest first.").

Anything the rules do not know degrades locally ("a value computed from x") and any internal
error degrades to :func:`generic_question`; :func:`describe_sql` never raises
(:func:`render_question` is the rules alone, for tests). Identifiers are humanized and
lowercased and no SQL text is generated, so SQL keywords never appear in the output (string
literals are quoted verbatim, in double quotes). Per call the state lives in small private scope
objects; the module keeps only caches (humanized words, rules per node type), so it is safe to
use from any Beam worker thread.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Optional

from sqlglot import exp

MAX_QUESTION_CHARS = 1000
"""Upper bound on the length of a question; longer ones are cut at a word boundary.

The bound :mod:`transforms.questions` puts on a model's question. A cut drops conditions and
values, and a question that says less than its SQL is wrong where a long one is only long, so
a rules question is cut only past this (no query of the Defog and SEDE sets comes near it).
"""

_MAX_DEPTH = 4  # nested SELECTs described before "a nested result"
_MAX_ITEMS = 6  # selected items named before "and N other values"
_MAX_LIST_VALUES = 30  # IN-list values named before "or N other values": each one is a condition
_FALLBACK_QUESTION = "Show the requested data."

# ---------------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------------

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


def _and_list(texts: list[str], conjunction: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(texts) <= 1:
        return texts[0] if texts else ""
    return ", ".join(texts[:-1]) + f" {conjunction} " + texts[-1]


def _has_article(text: str) -> bool:
    return text.startswith(("the ", "a ", "an ", "all ", "each ", "whether ", '"')) or (
        text[:1].isdigit() or text[:1] == "-"
    )


def _noun_list(texts: list[str]) -> str:
    """Join item phrases, giving bare column names a shared leading 'the'."""
    out: list[str] = []
    previous_articled = True
    for text in texts:
        articled = _has_article(text)
        out.append(text if articled or not previous_articled else "the " + text)
        previous_articled = articled
    return _and_list(out)


def _strip_article(text: str) -> str:
    for article in ("the ", "a ", "an "):
        if text.startswith(article):
            return text[len(article) :]
    return text


def _plural_phrase(text: str) -> str:
    """'the year of invoice date' -> 'years of invoice date'; 'flight id' -> 'flight ids'."""
    text = _strip_article(text)
    head, sep, tail = text.partition(" of ")
    if sep and " " not in head:
        return pluralize(head) + sep + tail
    return pluralize(text)


# ---------------------------------------------------------------------------------------------
# Scopes: the tables a SELECT reads and how its aliases resolve
# ---------------------------------------------------------------------------------------------

_GENERIC_ALIASES = frozenset(
    {"t", "s", "x", "q", "r", "sub", "subq", "subquery", "tmp", "temp", "derived", "dt", "cte"}
)


class _Source:
    """One table (or CTE, or derived table) in a scope."""

    __slots__ = ("singular", "plural", "how", "links", "cond", "matching", "items")

    def __init__(self, singular: str, plural: str, how: str, cond: str = "") -> None:
        self.singular = singular
        self.plural = plural
        self.how = how  # "main", "inner", "outer" or "cross"
        self.links = 0  # how many other tables join conditions connect it to
        self.cond = cond  # the WHERE/HAVING phrase of a derived table or CTE: it filters too
        self.matching = ""  # and what its outer joins' ON conditions keep (``_outer_join_matching``)
        self.items: dict[str, str] = _NO_ITEMS  # column -> what a filtered query in its body computes


class _Scope:
    """Rendering state for one SELECT (mutable, private to one :func:`describe_sql` call)."""

    __slots__ = (
        "parent",
        "depth",
        "sources",
        "order",
        "main",
        "mentioned",
        "select_aliases",
        "use_aliases",
        "entity_cond",
        "entity_mentioned",
        "correlation",
        "qualify_main",
        "counted",
        "ctes",
    )

    def __init__(self, parent: Optional["_Scope"]) -> None:
        self.parent = parent
        self.depth = parent.depth + 1 if parent else 0
        self.sources: dict[str, _Source] = {}
        self.order: list[_Source] = []
        self.main: Optional[_Source] = None
        self.mentioned: list[_Source] = []
        self.select_aliases: dict[str, str] = {}
        self.use_aliases = False
        self.entity_cond = ""  # the WHERE phrase, until a COUNT(*) phrase embeds it
        self.entity_mentioned = False
        self.correlation = "same"  # "same": 'the same x'; "drop": omit (EXISTS)
        self.qualify_main = False  # prefix main-table columns too ('playlist name')
        self.counted: Optional[_Source] = None  # what COUNT(*) counts when not the main rows
        self.ctes: dict[str, exp.Expression] = _NO_CTES  # CTE name -> body, as seen from here

    def entity(self) -> _Source:
        return self.main or _Source("record", "records", "main")

    def resolve(self, qualifier: str) -> tuple[Optional[_Source], bool]:
        """The source a column qualifier names, and whether it lives in an outer scope."""
        key = qualifier.lower()
        scope: Optional[_Scope] = self
        outer = False
        while scope is not None:
            source = scope.sources.get(key)
            if source is not None:
                return source, outer
            scope, outer = scope.parent, True
        return None, False

    def mention(self, source: _Source) -> None:
        if not any(seen is source for seen in self.mentioned):
            self.mentioned.append(source)


_NO_CTES: dict[str, exp.Expression] = {}  # shared, never written to
_NO_ITEMS: dict[str, str] = {}  # shared, never written to


def _source_for(
    node: exp.Expression, how: str, parent: Optional[_Scope], depth: int, ctes: dict[str, exp.Expression]
) -> _Source:
    """The words for one FROM/JOIN item; a derived table or CTE also brings its conditions.

    What a derived table or CTE keeps (its WHERE and HAVING, at any depth) filters the outer
    query as much as the outer WHERE does, so it is said (``_Source.cond``). A grouped one
    without an informative name yields one row per group: its rows are named after the
    grouping key ('authors' for ``GROUP BY authorid``).
    """
    body = None
    if ctes and isinstance(node, exp.Table) and node.args.get("db") is None:
        name = node.name.lower()
        body = ctes.get(name)
        if body is not None:  # its own body cannot see it again (a recursive CTE would loop)
            ctes = {key: value for key, value in ctes.items() if key != name}
    if isinstance(node, exp.Table) and node.name:
        words = humanize(node.name)
    else:
        alias = node.alias if isinstance(node, (exp.Subquery, exp.Table)) else ""
        inner = node.this if isinstance(node, exp.Subquery) else None
        body = inner
        if alias and alias.lower() not in _GENERIC_ALIASES and len(alias) > 2:
            words = humanize(alias)
        elif isinstance(inner, exp.Select) and isinstance(inner.args.get("from_"), exp.From):
            source = _source_for(inner.args["from_"].this, how, parent, depth + 1, ctes)
            _add_body_conditions(source, inner, parent, depth, ctes, rename=True)
            return source
        else:
            words = "record"
    singular = singularize(words)
    source = _Source(singular, pluralize(singular), how)
    if isinstance(body, exp.Select):
        _add_body_conditions(source, body, parent, depth, ctes, rename=False)
    elif isinstance(body, exp.SetOperation) and depth + 1 < _MAX_DEPTH:
        source.cond = _set_body_conditions(body, parent, depth + 1, ctes)
    return source


def _set_body_conditions(
    body: exp.SetOperation, parent: Optional[_Scope], depth: int, ctes: dict[str, exp.Expression]
) -> str:
    """The conditions of a UNION / INTERSECT / EXCEPT used as a table, branch by branch.

    'either a or b' (UNION), 'a and also b' (INTERSECT), 'a but not b' (EXCEPT); a UNION
    branch without conditions keeps the other branch's phrase, saying which rows it holds for
    ('a (in its first part only)'): the rows of the other branch are all kept.
    """
    texts = []
    for branch in (body.this, body.expression):
        while isinstance(branch, (exp.Subquery, exp.Paren)):
            branch = branch.this
        if isinstance(branch, exp.SetOperation):
            texts.append(_set_body_conditions(branch, parent, depth, ctes))
        elif isinstance(branch, exp.Select):
            probe = _Source("record", "records", "main")
            _add_body_conditions(probe, branch, parent, depth, ctes, rename=False)
            texts.append(probe.cond)
        else:
            texts.append("")
    first, second = texts
    if isinstance(body, exp.Intersect):
        return f"{first} and also {second}" if first and second else first or second
    if isinstance(body, exp.Except):
        return f"{first} but not {second}" if first and second else first or (
            f"not {second}" if second else "")
    if first and second:
        return f"either {first} or {second}"
    if first or second:
        return f"{first or second} (in its {'first' if first else 'second'} part only)"
    return ""


def _ctes_above(select: exp.Expression) -> dict[str, exp.Expression]:
    """The CTEs of the WITH clauses enclosing ``select`` (the innermost wins), read once per root."""
    found: dict[str, exp.Expression] = {}
    current = select.parent
    while current is not None:
        with_ = current.args.get("with_")
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                found.setdefault(cte.alias.lower(), cte.this)
        current = current.parent
    return found or _NO_CTES


def _add_body_conditions(
    source: _Source,
    body: exp.Select,
    parent: Optional[_Scope],
    depth: int,
    ctes: dict[str, exp.Expression],
    rename: bool,
) -> None:
    """Give ``source`` the WHERE/HAVING phrase of the query it stands for (see ``_source_for``)."""
    if depth >= _MAX_DEPTH:
        return
    having = body.args.get("having")
    group = body.args.get("group")
    from_ = body.args.get("from_")
    plain = (  # nothing in it filters: no scope to build (the common `SELECT .. FROM t GROUP BY ..`)
        body.args.get("where") is None
        and having is None
        and not body.args.get("joins")
        and isinstance(from_, exp.From)
        and isinstance(from_.this, exp.Table)
        and from_.this.name.lower() not in ctes
    )
    inner: Optional[_Scope] = None
    if not plain:
        inner = _build_scope(body, parent, depth + 1, ctes)
        conditions = [inner_source.cond for inner_source in inner.order if inner_source.cond]
        conditions += [_cond(c, inner, nested=True) for c in _filters(body)]
        if isinstance(having, exp.Having):
            conditions.append(_cond(having.this, inner, nested=True))
        source.cond = " and ".join(c for c in conditions if c)
        source.matching = _outer_join_matching(body, inner)
    _add_filtered_items(source, body, inner, parent, depth, ctes)
    if rename and isinstance(group, exp.Group) and len(group.expressions) == 1:
        key = _unwrap(group.expressions[0])
        if isinstance(key, exp.Column):
            words = humanize(key.name)
            stem = words[:-3] if words.endswith(" id") else words[:-2] if words.endswith("id") else words
            if len(stem) >= 3:
                source.singular = singularize(stem)
                source.plural = pluralize(source.singular)


def _add_filtered_items(
    source: _Source,
    body: exp.Select,
    inner: Optional[_Scope],
    parent: Optional[_Scope],
    depth: int,
    ctes: dict[str, exp.Expression],
) -> None:
    """Give ``source`` what its body's columns computed by a filtered query are.

    ``WITH t AS (SELECT .., (SELECT COUNT(*) .. WHERE closeddate IS NOT NULL) AS closedtotal ..)
    SELECT closedtotal FROM t``: the outer query names 'closed total', and only the body says
    which rows it counts (see ``_item_text``).
    """
    for item in body.expressions:
        if not isinstance(item, exp.Alias) or isinstance(item.this, (exp.Column, exp.Literal)):
            continue
        if item.this.find(exp.Query) is None:
            continue
        probe = inner
        if probe is None:  # a body without conditions has no scope yet: its CTEs are enough here
            probe = _Scope(parent)
            probe.ctes = ctes
        if not _has_filtered_query(item.this, probe):
            continue
        if inner is None:
            inner = _build_scope(body, parent, depth + 1, ctes)
        if source.items is _NO_ITEMS:
            source.items = {}
        source.items[item.alias.lower()] = _value(item.this, inner)


def _build_scope(
    select: exp.Select,
    parent: Optional[_Scope],
    depth: Optional[int] = None,
    ctes: Optional[dict[str, exp.Expression]] = None,
) -> _Scope:
    """The scope of ``select``; ``depth`` and ``ctes`` are given for a derived table's or CTE's
    body, whose scope only reads conditions (so its join links are not counted)."""
    scope = _Scope(parent)
    if depth is not None:
        scope.depth = depth  # a derived table or CTE body: as deep as the query naming it, plus one
    if ctes is None:
        ctes = parent.ctes if parent is not None else _ctes_above(select)
    with_ = select.args.get("with_")
    if isinstance(with_, exp.With):
        ctes = {**ctes, **{cte.alias.lower(): cte.this for cte in with_.expressions}}
    scope.ctes = ctes
    from_ = select.args.get("from_")
    nodes: list[tuple[exp.Expression, str]] = []
    if isinstance(from_, exp.From) and from_.this is not None:
        nodes.append((from_.this, "main"))
    for join in select.args.get("joins") or ():
        side, kind = (join.side or "").upper(), (join.kind or "").upper()
        how = "outer" if side else "cross" if kind == "CROSS" else "inner"
        nodes.append((join.this, how))
    for node, how in nodes:
        source = _source_for(node, how, parent, scope.depth, ctes)
        scope.order.append(source)
        if how == "main":
            scope.main = source
        for key in (node.alias, node.name if isinstance(node, exp.Table) else ""):
            if key and key.lower() not in scope.sources:
                scope.sources[key.lower()] = source
    if depth is None:
        _count_links(select, scope)
    return scope


def _count_links(select: exp.Select, scope: _Scope) -> None:
    """Count, per table, the distinct tables its JOIN ... ON conditions connect it to."""
    neighbours: dict[int, list[int]] = {}
    for join in select.args.get("joins") or ():
        on = join.args.get("on")
        if on is None:
            continue
        linked: list[_Source] = []
        for column in on.find_all(exp.Column):
            source = scope.sources.get(column.table.lower()) if column.table else None
            if source is not None and not any(seen is source for seen in linked):
                linked.append(source)
        for source in linked:
            known = neighbours.setdefault(id(source), [])
            for other in linked:
                if other is not source and id(other) not in known:
                    known.append(id(other))
                    source.links += 1


# ---------------------------------------------------------------------------------------------
# Values: expressions as noun phrases
# ---------------------------------------------------------------------------------------------

_Rule = Callable[[exp.Expression, _Scope], str]
_VALUE_RULES: dict[type, _Rule] = {}


def _value(node: Optional[exp.Expression], scope: _Scope) -> str:
    """Describe any expression as a noun phrase; unknown node types degrade, never raise."""
    if node is None:
        return "a value"
    rule = _VALUE_RULES.get(type(node))
    if rule is None:
        rule = _rule_for_type(type(node))
    return rule(node, scope)


def _rule_for_type(node_type: type) -> _Rule:
    for base in node_type.__mro__[1:]:
        rule = _VALUE_RULES.get(base)
        if rule is not None and base not in (exp.Expression,):
            _VALUE_RULES[node_type] = rule
            return rule
    _VALUE_RULES[node_type] = _computed_value
    return _computed_value


def _rules(*types: type) -> Callable[[_Rule], _Rule]:
    """Register a value rule for these node types (subclasses inherit it, see ``_value``)."""

    def register(rule: _Rule) -> _Rule:
        for node_type in types:
            _VALUE_RULES[node_type] = rule
        return rule

    return register


def _columns_in(node: exp.Expression, scope: _Scope, limit: int = 3) -> list[str]:
    names: list[str] = []
    for column in node.find_all(exp.Column):
        text = _column(column, scope)
        if text not in names:
            names.append(text)
            if len(names) == limit:
                break
    return names


def _computed_value(node: exp.Expression, scope: _Scope) -> str:
    columns = _columns_in(node, scope)
    return f"a value computed from {_and_list(columns)}" if columns else "a computed value"


@_rules(exp.Column)
def _column(node: exp.Expression, scope: _Scope) -> str:
    qualifier = node.table
    if isinstance(node.this, exp.Star):
        source = scope.resolve(qualifier)[0] if qualifier else None
        return f"all {source.singular} details" if source else "all details"
    name = node.name
    if not qualifier and scope.use_aliases:
        alias_text = scope.select_aliases.get(name.lower())
        if alias_text is not None:
            return alias_text
    words = humanize(name)
    if not qualifier:
        return words
    source, _ = scope.resolve(qualifier)
    if source is None or (source is scope.main and not scope.qualify_main):
        return words
    scope.mention(source)
    prefix = source.singular
    if words.startswith(prefix) or words.split(" ", 1)[0] == prefix.split(" ", 1)[0]:
        return words
    if scope.main is not None and source is not scope.main and prefix == scope.main.singular:
        prefix = "related " + prefix  # a self-join: 'the firstname and related employee firstname'
    return f"{prefix} {words}"


@_rules(exp.Star)
def _star(node: exp.Expression, scope: _Scope) -> str:
    return "all details"


_STRING_TYPES = (exp.National, exp.RawString, exp.UnicodeString)


def _string_value(node: Optional[exp.Expression]) -> Optional[str]:
    """The text of a string literal ('x', N'x', r'x'), else None."""
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else None
    if isinstance(node, _STRING_TYPES) and isinstance(node.this, str):
        return node.this
    return None


_CONTROL_RUN = re.compile(r"([\r\n\t]+)")


def _quoted(text: str) -> str:
    """A value in double quotes, its line breaks and tabs said in words (a question is one line).

    >>> _quoted("AC/DC")
    '"AC/DC"'
    >>> _quoted("<blockquote>\\n  <p>")
    '"<blockquote>" then a line break then "  <p>"'
    """
    if "\n" not in text and "\r" not in text and "\t" not in text:
        return f'"{text}"'
    out: list[str] = []
    for index, part in enumerate(_CONTROL_RUN.split(text)):  # piece, run, piece, run, ...
        if index % 2:
            out.append("a tab" if set(part) == {"\t"} else "a line break")
        elif part:
            out.append(f'"{part}"')
    return " then ".join(out)


def _folded_string(node: Optional[exp.Expression]) -> Optional[str]:
    """The text of a string literal, or of one built from literals alone
    (``'a' + CHAR(10) + 'b'``, ``'%' || 'x' || '%'``, ``CONCAT('%', 'x', '%')``), else None.

    A pattern built that way is as constant as a plain one, and is described like one.
    """
    while isinstance(node, exp.Paren):
        node = node.this
    text = _string_value(node)
    if text is not None or node is None:
        return text
    if isinstance(node, exp.Chr):
        code = node.expressions[0] if len(node.expressions) == 1 else None
        number = code.this if isinstance(code, exp.Literal) and not code.is_string else ""
        return chr(int(number)) if number.isdigit() and int(number) < 0x110000 else None
    if isinstance(node, (exp.Add, exp.DPipe)):
        parts = [node.this, node.expression]
    elif isinstance(node, exp.Concat):
        parts = list(node.expressions)
    else:
        return None
    texts = []
    for part in parts:
        text = _folded_string(part)
        if text is None:
            return None
        texts.append(text)
    return "".join(texts)


@_rules(exp.Literal, *_STRING_TYPES)
def _literal(node: exp.Expression, scope: _Scope) -> str:
    text = _string_value(node)
    return _quoted(text) if text is not None else str(node.this)


@_rules(exp.Boolean)
def _boolean(node: exp.Expression, scope: _Scope) -> str:
    return "true" if node.this else "false"


@_rules(exp.Null)
def _null(node: exp.Expression, scope: _Scope) -> str:
    return "nothing"


@_rules(exp.Placeholder, exp.Parameter)
def _placeholder(node: exp.Expression, scope: _Scope) -> str:
    name = node.this if isinstance(node, exp.Placeholder) and isinstance(node.this, str) else ""
    words = humanize(name) if name and not name.isdigit() else ""
    return f"the given {words}" if words and words != "value" else "a given value"


@_rules(exp.Var, exp.Identifier)
def _var(node: exp.Expression, scope: _Scope) -> str:
    return humanize(node.name)


@_rules(exp.Paren, exp.Alias, exp.Collate)
def _transparent(node: exp.Expression, scope: _Scope) -> str:
    return _value(node.this, scope)


_TRANSPARENT_FUNCS = (
    exp.Cast,
    exp.TryCast,
    exp.Lower,
    exp.Upper,
    exp.Trim,
    exp.Nullif,
    exp.Date,
    exp.TsOrDsToDate,
    exp.TsOrDsToTimestamp,
    exp.TimeStrToTime,
    exp.StrToDate,
    exp.StrToTime,
    exp.UnixToTime,
)
_rules(*_TRANSPARENT_FUNCS)(_transparent)


_WRAPPERS = (exp.Paren, exp.Alias, exp.Collate) + _TRANSPARENT_FUNCS


def _unwrap(node: Optional[exp.Expression]) -> Optional[exp.Expression]:
    while isinstance(node, _WRAPPERS):
        node = node.this
    return node


@_rules(exp.Convert)
def _convert(node: exp.Expression, scope: _Scope) -> str:
    return _value(node.expression, scope)


@_rules(exp.Neg)
def _neg(node: exp.Expression, scope: _Scope) -> str:
    inner = _value(node.this, scope)
    return f"-{inner}" if isinstance(node.this, exp.Literal) else f"the negative of {inner}"


@_rules(exp.Tuple)
def _tuple(node: exp.Expression, scope: _Scope) -> str:
    return _and_list([_value(e, scope) for e in node.expressions])


@_rules(exp.Subquery, exp.Select, exp.SetOperation)
def _subquery_value(node: exp.Expression, scope: _Scope) -> str:
    return _query_np(node, scope)


# --- aggregates -------------------------------------------------------------------------------


def _count_all(scope: _Scope) -> str:
    """'the number of <entity>', embedding the WHERE phrase the first time it is used."""
    scope.entity_mentioned = True
    cond, scope.entity_cond = scope.entity_cond, ""
    counted = scope.counted or scope.entity()
    return f"the number of {counted.plural}" + (f" with {cond}" if cond else "")


def _single_branch(node: Optional[exp.Expression]) -> Optional[tuple[exp.Expression, exp.Expression]]:
    """(condition, value) of ``CASE WHEN c THEN v [ELSE 0|NULL] END`` or ``IF(c, v, 0)``."""
    node = _unwrap(node)
    if isinstance(node, exp.Case) and node.this is None and len(node.args.get("ifs") or ()) == 1:
        branch, default = node.args["ifs"][0], node.args.get("default")
        condition, value = branch.this, branch.args.get("true")
    elif isinstance(node, exp.If):
        condition, value, default = node.this, node.args.get("true"), node.args.get("false")
    else:
        return None
    neutral = default is None or isinstance(default, exp.Null) or (
        isinstance(default, exp.Literal) and not default.is_string and default.this in ("0", "0.0")
    )
    return (condition, value) if neutral and condition is not None and value is not None else None


def _is_one(node: Optional[exp.Expression]) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and node.this in ("1", "1.0")


def _conditional_count(condition: exp.Expression, scope: _Scope) -> str:
    scope.entity_mentioned = True
    return f"the number of {scope.entity().plural} with {_cond(condition, scope)}"


def _aggregate_of(word: str, text: str) -> str:
    """'average' + 'milliseconds' -> 'the average milliseconds' ('the total of the total')."""
    if _strip_article(text).startswith(word.split(" ", 1)[0]):
        return f"the {word} of the {_strip_article(text)}"
    if text.startswith("the "):
        return f"the {word} {text[4:]}"
    if _has_article(text):
        return f"the {word} of {text}"
    return f"the {word} {text}"


def _counted_noun(node: exp.Expression, scope: _Scope) -> str:
    """What ``COUNT(x)`` counts, in the plural: 'flight_id' -> 'flights', 'name' -> 'names'."""
    text = _value(node, scope)
    column = _unwrap(node)
    if isinstance(column, exp.Column) and not isinstance(column.this, exp.Star):
        words = humanize(column.name)
        stem = words[:-3] if words.endswith(" id") else words[:-2] if words.endswith("id") else ""
        owner = scope.resolve(column.table)[0] if column.table else scope.main
        if owner is not None and _is_short_key_of(words, owner.singular):
            scope.entity_mentioned = scope.entity_mentioned or owner is scope.main
            return owner.plural
        if len(stem) >= 4 or " " in words or words == "id":
            if owner is not None and (words == "id" or stem == owner.singular):
                scope.entity_mentioned = scope.entity_mentioned or owner is scope.main
                return owner.plural
            if stem:
                return pluralize(stem)
    return _plural_phrase(text)


def _is_short_key_of(words: str, singular: str) -> bool:
    """'rid' of 'review', 'pid' of 'paper': an initial-plus-id key column of a one-word table."""
    return len(words) == 3 and words.endswith("id") and " " not in singular and words[0] == singular[0]


def _is_count_all(node: Optional[exp.Expression]) -> bool:
    """``COUNT(*)`` / ``COUNT(1)``."""
    if not isinstance(node, exp.Count):
        return False
    arg = node.this
    return arg is None or isinstance(arg, exp.Star) or _is_number_literal(arg)


@_rules(exp.Count)
def _count(node: exp.Expression, scope: _Scope) -> str:
    arg = node.this
    if _is_count_all(node):
        return _count_all(scope)
    if isinstance(arg, exp.Distinct):
        values = [_counted_noun(e, scope) for e in arg.expressions]
        branch = _single_branch(arg.expressions[0]) if len(arg.expressions) == 1 else None
        if branch is not None:
            return (
                f"the number of distinct {_plural_phrase(_value(branch[1], scope))}"
                f" with {_cond(branch[0], scope)}"
            )
        return "the number of distinct " + _and_list(values)
    branch = _single_branch(arg)
    if branch is not None:
        return _conditional_count(branch[0], scope)
    counted = _counted_noun(arg, scope)
    if counted == scope.entity().plural:
        return _count_all(scope)
    return "the number of " + counted


_AGGREGATE_WORDS: dict[type, str] = {
    exp.Sum: "total",
    exp.Avg: "average",
    exp.Min: "minimum",
    exp.Max: "maximum",
    exp.Median: "median",
    exp.Stddev: "standard deviation of",
    exp.StddevPop: "standard deviation of",
    exp.StddevSamp: "standard deviation of",
    exp.Variance: "variance of",
    exp.VariancePop: "variance of",
    exp.AnyValue: "any",
}


@_rules(*_AGGREGATE_WORDS)
def _aggregate(node: exp.Expression, scope: _Scope) -> str:
    word = _AGGREGATE_WORDS[type(node)]
    arg = node.this
    distinct = isinstance(arg, exp.Distinct)
    if distinct:
        arg = arg.expressions[0] if arg.expressions else None
    branch = _single_branch(arg)
    if branch is not None:
        condition, value = branch
        if type(node) is exp.Sum and _is_one(value):
            return _conditional_count(condition, scope)
        scope.entity_mentioned = True
        entity = scope.entity().plural
        return (
            _aggregate_of(word, _value(value, scope))
            + f" of {entity} with {_cond(condition, scope)}"
        )
    text = _value(arg, scope)
    if word == "total" and _strip_article(text).startswith("total"):
        word = "combined"
    if word.endswith(" of"):
        return f"the {word} {'distinct ' if distinct else ''}{text}"
    return _aggregate_of(word + (" distinct" if distinct else ""), text)


@_rules(exp.GroupConcat, exp.ArrayAgg)
def _list_aggregate(node: exp.Expression, scope: _Scope) -> str:
    arg = node.this
    if isinstance(arg, exp.Distinct) and arg.expressions:
        return "the list of distinct " + _plural_phrase(_value(arg.expressions[0], scope))
    return "the list of " + _plural_phrase(_value(arg, scope))


@_rules(exp.CountIf)
def _count_if(node: exp.Expression, scope: _Scope) -> str:
    return _conditional_count(node.this, scope)


@_rules(exp.ApproxDistinct)
def _approx_distinct(node: exp.Expression, scope: _Scope) -> str:
    return "the approximate number of distinct " + _plural_phrase(_value(node.this, scope))


@_rules(exp.Filter)
def _filter(node: exp.Expression, scope: _Scope) -> str:
    where = node.expression
    condition = where.this if isinstance(where, exp.Where) else where
    inner = node.this
    if _is_count_all(inner):
        return _conditional_count(condition, scope)
    scope.entity_mentioned = True
    return (
        f"{_value(inner, scope)} of {scope.entity().plural} with {_cond(condition, scope)}"
    )


@_rules(exp.WithinGroup)
def _within_group(node: exp.Expression, scope: _Scope) -> str:
    func, order = node.this, node.expression
    keys = order.expressions if isinstance(order, exp.Order) else []
    target = _value(keys[0].this, scope) if keys else "the values"
    fraction = func.this if isinstance(func, (exp.PercentileCont, exp.PercentileDisc)) else None
    if isinstance(fraction, exp.Literal) and fraction.this in ("0.5", ".5"):
        return _aggregate_of("median", target)
    if isinstance(fraction, exp.Literal):
        try:
            percent = f"{float(fraction.this) * 100:g}"
        except ValueError:
            percent = fraction.this
        return f"the {percent}th percentile of {target}"
    return f"{_value(func, scope)} of {target}"


# --- arithmetic -------------------------------------------------------------------------------


def _is_number_literal(node: Optional[exp.Expression], values: tuple[str, ...] = ()) -> bool:
    node = _unwrap(node)
    return (
        isinstance(node, exp.Literal)
        and not node.is_string
        and (not values or node.this in values)
    )


@_rules(exp.Div, exp.SafeDivide, exp.IntDiv)
def _div(node: exp.Expression, scope: _Scope) -> str:
    left, right = node.this, node.expression
    if _is_number_literal(right):
        return f"{_value(left, scope)} divided by {_value(right, scope)}"
    hundredths = _times_hundred(left)
    if hundredths is not None:
        return f"the percentage of {_value(hundredths, scope)} relative to {_value(right, scope)}"
    return f"the ratio of {_value(left, scope)} to {_value(right, scope)}"


def _times_hundred(node: Optional[exp.Expression]) -> Optional[exp.Expression]:
    """x for ``x * 100`` or ``100.0 * x``, else None."""
    node = _unwrap(node)
    if not isinstance(node, exp.Mul):
        return None
    if _is_number_literal(node.expression, ("100", "100.0")):
        return node.this
    if _is_number_literal(node.this, ("100", "100.0")):
        return node.expression
    return None


@_rules(exp.Mul)
def _mul(node: exp.Expression, scope: _Scope) -> str:
    ratio = _unwrap(_times_hundred(node))
    if isinstance(ratio, (exp.Div, exp.SafeDivide)):
        return (
            f"the percentage of {_value(ratio.this, scope)} relative to "
            f"{_value(ratio.expression, scope)}"
        )
    return f"{_value(node.this, scope)} times {_value(node.expression, scope)}"


def _interval_text(node: exp.Expression, scope: _Scope) -> Optional[str]:
    """'7 days' for INTERVAL '7 days' / INTERVAL '7' DAY, else None."""
    if not isinstance(node, exp.Interval):
        return None
    amount = node.this
    unit = node.args.get("unit")
    amount_text = amount.name if isinstance(amount, exp.Literal) else _value(amount, scope)
    if unit is None:
        return amount_text.lower()
    unit_word = singularize(humanize(unit.name))
    return f"{amount_text} {unit_word if amount_text in ('1', '1.0') else pluralize(unit_word)}"


@_rules(exp.Sub)
def _sub(node: exp.Expression, scope: _Scope) -> str:
    left, right = node.this, node.expression
    interval = _interval_text(right, scope)
    if interval is not None:
        return f"{interval} before {_value(left, scope)}"
    return f"the difference between {_value(left, scope)} and {_value(right, scope)}"


@_rules(exp.Add)
def _add(node: exp.Expression, scope: _Scope) -> str:
    left, right = node.this, node.expression
    interval = _interval_text(right, scope)
    if interval is not None:
        return f"{interval} after {_value(left, scope)}"
    return f"{_value(left, scope)} plus {_value(right, scope)}"


@_rules(exp.Mod)
def _mod(node: exp.Expression, scope: _Scope) -> str:
    return f"the remainder of {_value(node.this, scope)} divided by {_value(node.expression, scope)}"


@_rules(exp.Interval)
def _interval(node: exp.Expression, scope: _Scope) -> str:
    return _interval_text(node, scope) or "a time span"


@_rules(exp.DPipe, exp.Concat, exp.ConcatWs)
def _concat(node: exp.Expression, scope: _Scope) -> str:
    if isinstance(node, exp.DPipe):
        parts = _operands(node, exp.DPipe)
    else:
        parts = list(node.expressions)
        if isinstance(node, exp.ConcatWs):
            parts = parts[1:]
    texts = [
        _value(part, scope)
        for part in parts
        if not (isinstance(part, exp.Literal) and part.is_string and not part.this.strip(" -_,.:/|"))
    ]
    return "the combination of " + _and_list(texts) if len(texts) > 1 else _and_list(texts)


# --- scalar functions -------------------------------------------------------------------------


@_rules(exp.Coalesce)
def _coalesce(node: exp.Expression, scope: _Scope) -> str:
    first = _value(node.this, scope)
    rest = [_value(e, scope) for e in node.expressions]
    return f"{first} (or {_and_list(rest, 'or')} if missing)" if rest else first


@_rules(exp.Round)
def _round(node: exp.Expression, scope: _Scope) -> str:
    decimals = node.args.get("decimals")
    text = _value(node.this, scope)
    if isinstance(decimals, exp.Literal):
        places = decimals.this
        return f"{text} rounded to {places} decimal place{'' if places == '1' else 's'}"
    return f"{text} rounded"


@_rules(exp.Ceil, exp.Floor)
def _ceil_floor(node: exp.Expression, scope: _Scope) -> str:
    direction = "up" if isinstance(node, exp.Ceil) else "down"
    return f"{_value(node.this, scope)} rounded {direction}"


@_rules(exp.Abs)
def _abs(node: exp.Expression, scope: _Scope) -> str:
    return f"the absolute value of {_value(node.this, scope)}"


@_rules(exp.Length)
def _length(node: exp.Expression, scope: _Scope) -> str:
    return f"the length of {_value(node.this, scope)}"


@_rules(exp.Substring, exp.Left, exp.Right)
def _substring(node: exp.Expression, scope: _Scope) -> str:
    text = _value(node.this, scope)
    if isinstance(node, (exp.Left, exp.Right)):
        count = node.expression
        side = "first" if isinstance(node, exp.Left) else "last"
    else:
        start, count, side = node.args.get("start"), node.args.get("length"), "first"
        if not _is_number_literal(start, ("1",)):
            return f"part of {text}"
    if isinstance(count, exp.Literal):
        return f"the {side} {count.this} characters of {text}"
    return f"part of {text}"


@_rules(exp.Greatest, exp.Least)
def _greatest_least(node: exp.Expression, scope: _Scope) -> str:
    word = "largest" if isinstance(node, exp.Greatest) else "smallest"
    texts = [_value(node.this, scope)] + [_value(e, scope) for e in node.expressions]
    return f"the {word} of {_and_list(texts)}"


@_rules(exp.Case, exp.If)
def _case(node: exp.Expression, scope: _Scope) -> str:
    if _has_filtered_query(node, scope):
        return _case_branches(node, scope)
    columns = _columns_in(node, scope)
    basis = _and_list(columns) if columns else "the given conditions"
    return f"a category based on {basis}"


def _case_branches(node: exp.Expression, scope: _Scope) -> str:
    """'x if c, otherwise y', every branch said.

    For a CASE whose conditions or values query rows with conditions of their own
    (``CASE WHEN EXISTS (SELECT .. WHERE ..) THEN ..``): 'a category based on x' would hide
    what those queries keep. Other CASEs stay a category (their branches are values).
    """
    if isinstance(node, exp.If):
        branches = [(node.this, node.args.get("true"))]
        default, subject = node.args.get("false"), None
    else:
        branches = [(branch.this, branch.args.get("true")) for branch in node.args.get("ifs") or ()]
        default, subject = node.args.get("default"), node.this
    texts = []
    for condition, value in branches:
        if subject is not None:  # CASE x WHEN 1 THEN ..
            when = f"{_value(subject, scope)} {_value(condition, scope)}"
        else:
            when = _cond(condition, scope, nested=True)
        texts.append(f"{_value(value, scope)} if {when}")
    otherwise = _value(default, scope) if default is not None else "nothing"
    return ", ".join(texts) + f", otherwise {otherwise}"


# --- dates ------------------------------------------------------------------------------------

_FORMAT_WORDS = {
    "%Y": "year",
    "%y": "year",
    "%G": "year",
    "%m": "month",
    "%b": "month",
    "%B": "month",
    "%d": "day",
    "%e": "day",
    "%j": "day of the year",
    "%H": "hour",
    "%I": "hour",
    "%M": "minute",
    "%S": "second",
    "%f": "second",
    "%w": "weekday",
    "%u": "weekday",
    "%a": "weekday",
    "%A": "weekday",
    "%W": "week",
    "%U": "week",
    "%V": "week",
    "%s": "unix time",
    "%p": "am or pm",
}
_FORMAT_TOKEN = re.compile(r"%.|[^%]")
_SQLITE_MODIFIER = re.compile(
    r"^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*(year|month|day|hour|minute|second)s?\s*$", re.IGNORECASE
)
_SQLITE_DATE_FUNCS = frozenset({"DATE", "DATETIME", "JULIANDAY", "TIME", "UNIXEPOCH", "STRFTIME"})


def _format_words(fmt: str) -> Optional[str]:
    """'%Y-%m' -> 'year and month'; None if the format holds anything but tokens/separators."""
    words: list[str] = []
    for token in _FORMAT_TOKEN.findall(fmt):
        if token.startswith("%"):
            word = _FORMAT_WORDS.get(token)
            if word is None:
                return None
            if word not in words:
                words.append(word)
        elif token.isalnum():
            return None
    if words == ["year", "month", "day"]:
        return "date"
    return _and_list(words) if words else None


def _formatted(fmt_node: Optional[exp.Expression], target: str) -> str:
    fmt = fmt_node.this if isinstance(fmt_node, exp.Literal) else None
    words = _format_words(fmt) if fmt else None
    if words is None:
        return f"{target} formatted as \"{fmt}\"" if fmt else f"the formatted {target}"
    if words == "unix time":
        return f"the unix time of {target}"
    return f"the {words} of {target}"


@_rules(exp.TimeToStr)
def _time_to_str(node: exp.Expression, scope: _Scope) -> str:
    return _formatted(node.args.get("format"), _value(node.this, scope))


@_rules(exp.Extract)
def _extract(node: exp.Expression, scope: _Scope) -> str:
    unit = humanize(node.this.name) if node.this is not None else "part"
    return f"the {singularize(unit)} of {_value(node.expression, scope)}"


@_rules(
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Quarter,
    exp.Week,
    exp.WeekOfYear,
    exp.DayOfWeek,
    exp.DayOfMonth,
    exp.DayOfYear,
    exp.Hour,
    exp.Minute,
    exp.Second,
)
def _date_part(node: exp.Expression, scope: _Scope) -> str:
    return f"the {humanize(type(node).__name__)} of {_value(node.this, scope)}"


@_rules(exp.DateTrunc, exp.TimestampTrunc, exp.DatetimeTrunc, exp.TimeTrunc)
def _date_trunc(node: exp.Expression, scope: _Scope) -> str:
    unit = node.args.get("unit")
    unit_word = singularize(humanize(unit.name)) if unit is not None else "period"
    return f"the {unit_word} of {_value(node.this, scope)}"


def _unit_amount(amount: str, unit: Optional[exp.Expression]) -> str:
    unit_word = singularize(humanize(unit.name)) if unit is not None else "day"
    return f"{amount} {unit_word if amount == '1' else pluralize(unit_word)}"


@_rules(exp.DateAdd, exp.DateSub, exp.TsOrDsAdd, exp.TimestampAdd, exp.TimestampSub)
def _date_add(node: exp.Expression, scope: _Scope) -> str:
    amount = _value(node.expression, scope)
    negative = amount.startswith("-")
    if isinstance(node, (exp.DateSub, exp.TimestampSub)):
        negative = not negative
    direction = "before" if negative else "after"
    return f"{_unit_amount(amount.lstrip('-'), node.args.get('unit'))} {direction} {_value(node.this, scope)}"


@_rules(exp.DateDiff, exp.TimestampDiff, exp.DatetimeDiff, exp.TsOrDsDiff)
def _date_diff(node: exp.Expression, scope: _Scope) -> str:
    unit = node.args.get("unit")
    unit_word = pluralize(singularize(humanize(unit.name))) if unit is not None else "days"
    return (
        f"the number of {unit_word} between {_value(node.expression, scope)}"
        f" and {_value(node.this, scope)}"
    )


@_rules(exp.CurrentDate)
def _current_date(node: exp.Expression, scope: _Scope) -> str:
    return "today"


@_rules(exp.CurrentTimestamp, exp.CurrentDatetime, exp.CurrentTime)
def _current_time(node: exp.Expression, scope: _Scope) -> str:
    return "now"


def _sqlite_datetime(name: str, args: list[exp.Expression], scope: _Scope) -> str:
    """SQLite ``date(x, '-7 days', ...)`` family: a base time shifted by modifiers."""
    fmt = args[0] if name == "STRFTIME" and args else None
    rest = args[1:] if name == "STRFTIME" else args
    if not rest:
        return _formatted(fmt, "now") if fmt is not None else "now"
    base_node = rest[0]
    if isinstance(base_node, exp.Literal) and base_node.is_string and base_node.this.lower() == "now":
        text = "today" if name == "DATE" else "now"
    else:
        text = _value(base_node, scope)
    for modifier in rest[1:]:
        match = _SQLITE_MODIFIER.match(modifier.this) if isinstance(modifier, exp.Literal) else None
        if match:
            sign, amount, unit = match.groups()
            unit_word = unit.lower()
            amount_text = f"{amount} {unit_word if amount == '1' else pluralize(unit_word)}"
            text = f"{amount_text} {'before' if sign == '-' else 'after'} {text}"
        elif isinstance(modifier, exp.Literal) and modifier.this.lower().startswith("start of "):
            text = f"the start of the {modifier.this[9:].strip().lower()} of {text}"
    if fmt is not None:
        return _formatted(fmt, text)
    return text


@_rules(exp.Date, exp.Datetime, exp.Time)
def _date_call(node: exp.Expression, scope: _Scope) -> str:
    """``DATE(x)`` is x; ``DATE('now', '-7 days')`` (SQLite modifiers) is '7 days before today'."""
    args = [node.this] + [
        value for key, value in node.args.items() if key != "this" and isinstance(value, exp.Expression)
    ]
    if len(args) == 1 and _string_value(node.this) != "now":
        return _value(node.this, scope)
    name = "DATE" if isinstance(node, exp.Date) else "DATETIME"
    return _sqlite_datetime(name, [arg for arg in args if arg is not None], scope)


@_rules(exp.Anonymous)
def _anonymous(node: exp.Expression, scope: _Scope) -> str:
    name = str(node.this or "")
    args = list(node.expressions)
    if name.upper() in _SQLITE_DATE_FUNCS:
        return _sqlite_datetime(name.upper(), args, scope)
    words = humanize(name)
    if not args:
        return f"the {words}"
    return f"the {words} of {_and_list([_value(arg, scope) for arg in args[:3]])}"


def _function(node: exp.Expression, scope: _Scope) -> str:
    """Known-but-unmapped sqlglot functions: 'the <name> of <arguments>'."""
    words = humanize(type(node).__name__)
    args: list[str] = []
    for value in node.args.values():
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, exp.Expression) and not isinstance(item, exp.DataType):
                args.append(_value(item, scope))
            if len(args) == 3:
                break
    return f"the {words} of {_and_list(args)}" if args else f"the {words}"


_VALUE_RULES[exp.Func] = _function


@_rules(exp.Window)
def _window_value(node: exp.Expression, scope: _Scope) -> str:
    return _window_phrase(node, scope)[1]


@_rules(exp.Predicate, exp.Connector, exp.Not)
def _predicate_value(node: exp.Expression, scope: _Scope) -> str:
    return f"whether it has {_cond(node, scope)}"


@_rules(exp.Dot)
def _dot(node: exp.Expression, scope: _Scope) -> str:
    return humanize(node.name) if node.name else _computed_value(node, scope)


@_rules(exp.Distinct)
def _distinct_value(node: exp.Expression, scope: _Scope) -> str:
    return "the distinct " + _and_list([_value(e, scope) for e in node.expressions])


# --- windows ----------------------------------------------------------------------------------

_RANK_FUNCS = (exp.RowNumber, exp.Rank, exp.DenseRank)
_RUNNING_WORDS: dict[type, str] = {
    exp.Sum: "a running total of",
    exp.Count: "a running count of",
    exp.Avg: "a running average of",
    exp.Min: "a running minimum of",
    exp.Max: "a running maximum of",
}
_OFFSET_WORDS: dict[type, str] = {
    exp.Lag: "the previous",
    exp.Lead: "the next",
    exp.FirstValue: "the first",
    exp.LastValue: "the last",
    exp.NthValue: "the nth",
}


def _order_keys(order: Optional[exp.Expression], scope: _Scope) -> list[tuple[str, bool]]:
    if not isinstance(order, exp.Order):
        return []
    keys = []
    for ordered in order.expressions:
        target = ordered.this if isinstance(ordered, exp.Ordered) else ordered
        keys.append((_value(target, scope), bool(ordered.args.get("desc"))))
    return keys


def _window_phrase(node: exp.Expression, scope: _Scope) -> tuple[str, str]:
    """(clause, noun phrase): ('ranked by x', 'the rank by x') for one window function."""
    func = node.this
    keys = _order_keys(node.args.get("order"), scope)
    by = _and_list([f"{text} (highest first)" if desc else text for text, desc in keys])
    partitions = [_value(p, scope) for p in node.args.get("partition_by") or ()]
    within = f" within each {_and_list(partitions)}" if partitions else ""
    by_text = f" by {by}" if by else ""
    if isinstance(func, _RANK_FUNCS):
        if not by:
            return f"numbered{within or ' in order'}", f"a sequence number{within}"
        return f"ranked{by_text}{within}", f"the rank{by_text}{within}"
    if isinstance(func, exp.Ntile):
        groups = _value(func.this, scope)
        return (
            f"split into {groups} groups{by_text}{within}",
            f"the group out of {groups}{by_text}{within}",
        )
    if isinstance(func, (exp.PercentRank, exp.CumeDist)):
        phrase = f"the percentile rank{by_text}{within}"
        return f"with {phrase}", phrase
    offset_word = _OFFSET_WORDS.get(type(func))
    if offset_word is not None:
        phrase = f"{offset_word} {_strip_article(_value(func.this, scope))}{by_text}{within}"
        return f"with {phrase}", phrase
    running = _RUNNING_WORDS.get(type(func))
    if running is not None and keys:
        target = func.this
        if target is None or isinstance(target, exp.Star):
            phrase = f"a running count{by_text}{within}"
        else:
            phrase = f"{running} {_strip_article(_value(target, scope))}{by_text}{within}"
        return f"with {phrase}", phrase
    base = _value(func, scope)
    phrase = f"{base}{within}" if within else f"{base} over all {scope.entity().plural}"
    return f"with {phrase}", phrase


# ---------------------------------------------------------------------------------------------
# Conditions: phrases that read after "with" / "have"
# ---------------------------------------------------------------------------------------------

_COMPARISONS: dict[type, str] = {
    exp.EQ: "equal to",
    exp.NullSafeEQ: "equal to",
    exp.NEQ: "not equal to",
    exp.NullSafeNEQ: "not equal to",
    exp.GT: "greater than",
    exp.GTE: "at least",
    exp.LT: "less than",
    exp.LTE: "at most",
}
_NEGATED: dict[type, type] = {
    exp.EQ: exp.NEQ,
    exp.NEQ: exp.EQ,
    exp.NullSafeEQ: exp.NullSafeNEQ,
    exp.NullSafeNEQ: exp.NullSafeEQ,
    exp.GT: exp.LTE,
    exp.LTE: exp.GT,
    exp.LT: exp.GTE,
    exp.GTE: exp.LT,
}
_MIRRORED: dict[type, type] = {exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.LTE, exp.LTE: exp.GTE}
_PATTERN_TYPES = (exp.Like, exp.ILike)
_VALUE_LIKE = (exp.Literal, exp.Placeholder, exp.Parameter, exp.Boolean, exp.Neg) + _STRING_TYPES


def _operands(node: Optional[exp.Expression], node_type: type) -> list[exp.Expression]:
    """The operands of a chain of one binary operator (``a AND (b AND c)``), parentheses removed."""
    out: list[exp.Expression] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        while isinstance(current, exp.Paren):
            current = current.this
        if isinstance(current, node_type):
            stack.append(current.expression)
            stack.append(current.this)
        else:
            out.append(current)
    return out


def _conjuncts(node: Optional[exp.Expression]) -> list[exp.Expression]:
    return _operands(node, exp.And)


def _cond(node: Optional[exp.Expression], scope: _Scope, negated: bool = False, nested: bool = False) -> str:
    """Describe a boolean expression as a phrase that reads after 'with' / 'have'."""
    while isinstance(node, exp.Paren):
        node = node.this
    if node is None:
        return "no condition"
    if isinstance(node, exp.Not):
        return _cond(node.this, scope, not negated, nested)
    if isinstance(node, exp.And):
        return _connective(_conjuncts(node), scope, negated, nested, is_and=True)
    if isinstance(node, exp.Or):
        return _connective(_operands(node, exp.Or), scope, negated, nested, is_and=False)
    if node.args.get("negate"):  # x NOT LIKE y, x IS NOT NULL in some dialects
        negated = not negated
    node_type = type(node)
    if node_type in _COMPARISONS:
        return _comparison(node, scope, negated)
    if isinstance(node, _PATTERN_TYPES):
        return _pattern(node, scope, negated)
    if isinstance(node, exp.In):
        return _in(node, scope, negated)
    if isinstance(node, exp.Between):
        low, high = _value(node.args.get("low"), scope), _value(node.args.get("high"), scope)
        word = "not between" if negated else "between"
        return f"{_value(node.this, scope)} {word} {low} and {high}"
    if isinstance(node, exp.Is):
        return _is(node, scope, negated)
    if isinstance(node, exp.Exists):
        return _exists(node, scope, negated)
    if isinstance(node, (exp.RegexpLike, exp.SimilarTo, exp.Glob)):
        word = "not matching" if negated else "matching"
        return f"{_value(node.this, scope)} {word} the pattern {_value(node.expression, scope)}"
    if isinstance(node, exp.StartsWith):
        word = "not starting with" if negated else "starting with"
        return f"{_value(node.this, scope)} {word} {_value(node.expression, scope)}"
    if isinstance(node, (exp.Column, exp.Boolean)):
        truth = "false" if negated else "true"
        if isinstance(node, exp.Column):
            flag = _flag_phrase(node, not negated, scope)
            return flag if flag is not None else f"{_value(node, scope)} {truth}"
        return truth
    columns = _columns_in(node, scope)
    basis = f"a condition on {_and_list(columns)}" if columns else "the given condition"
    return f"no {basis[2:]}" if negated else basis


def _connective(
    parts: list[exp.Expression], scope: _Scope, negated: bool, nested: bool, is_and: bool
) -> str:
    if negated and not is_and:  # NOT (a OR b): neither a nor b
        texts = [_cond(part, scope, False, True) for part in parts]
        merged = _merge_patterns(parts, texts, scope, all_of=False, none_of=True)
        if merged is not None:
            return merged
        return "neither " + " nor ".join(texts)
    effective_and = is_and != negated  # De Morgan for NOT (a AND b)
    if not effective_and:
        merged = _merge_equalities(parts, scope, negated)
        if merged is not None:
            return merged
    texts = [_cond(part, scope, negated, True) for part in parts]
    if isinstance(parts[0], _PATTERN_TYPES + (exp.Not,)):
        merged = _merge_patterns(parts, texts, scope, all_of=effective_and)
        if merged is not None:
            return f"either {merged}" if nested and not effective_and else merged
    if effective_and:
        return " and ".join(texts)
    joined = _and_list(texts, "or")
    return f"either {joined}" if nested else joined


def _merge_equalities(parts: list[exp.Expression], scope: _Scope, negated: bool) -> Optional[str]:
    """``a = 1 OR a = 2`` -> 'a 1 or 2' (same column, literal values)."""
    left_text: Optional[str] = None
    values: list[exp.Expression] = []
    for part in parts:
        if negated or not isinstance(part, exp.EQ) or not isinstance(part.expression, _VALUE_LIKE):
            return None
        text = _value(part.this, scope)
        if left_text is not None and text != left_text:
            return None
        left_text = text
        values.append(part.expression)
    if left_text is None or len(values) < 2:
        return None
    return _one_of(left_text, values, scope, negated=False)


_PATTERN_WORDS = ("containing ", "starting with ", "ending with ")


def _merge_patterns(
    parts: list[exp.Expression], texts: list[str], scope: _Scope, all_of: bool, none_of: bool = False
) -> Optional[str]:
    """One column against several patterns of one kind, said once.

    ``t LIKE '%a%' OR t LIKE '%b%'`` -> 't containing "a" or "b"';
    ``t NOT LIKE '%a%' AND t NOT LIKE '%b%'`` (``all_of``) and ``NOT (t LIKE '%a%' OR t LIKE
    '%b%')`` (``none_of``) -> 't containing none of "a" and "b"'.
    """
    if len(parts) < 2:
        return None
    patterns = []
    for part in parts:
        pattern = part.this if isinstance(part, exp.Not) else part
        if not isinstance(pattern, _PATTERN_TYPES):
            return None
        patterns.append(pattern)
    left = _value(patterns[0].this, scope)
    for kind in _PATTERN_WORDS:
        prefix = f"{left} {'not ' if all_of else ''}{kind}"
        rest = [text[len(prefix) :] for text in texts if text.startswith(prefix)]
        if len(rest) == len(texts) and all(r.startswith('"') and r.count('"') == 2 for r in rest):
            if all_of or none_of:
                return f"{left} {kind}none of {_and_list(rest)}"
            return prefix + _and_list(rest, "or")
    return None


_EXCLUSION = re.compile(r'(.+) not (containing|starting with|ending with) ("[^"]*")')


def _merge_exclusions(texts: list[str]) -> list[str]:
    """Say neighbouring exclusions of one column once: 'name containing none of "a" and "e"'.

    >>> _merge_exclusions(['name not containing "a"', 'name not containing "e"', 'total 5'])
    ['name containing none of "a" and "e"', 'total 5']
    """
    out: list[str] = []
    run: list[str] = []
    key: Optional[tuple[str, str]] = None
    if len(texts) < 2:
        return texts
    for text in texts + [""]:
        match = _EXCLUSION.fullmatch(text) if " not " in text else None
        found = (match.group(1), match.group(2)) if match else None
        if found is not None and found == key:
            run.append(match.group(3))
            continue
        if key is not None:
            out.append(f"{key[0]} {key[1]} none of {_and_list(run)}" if len(run) > 1
                       else f"{key[0]} not {key[1]} {run[0]}")
        key, run = (found, [match.group(3)]) if found is not None else (None, [])
        if found is None and text:
            out.append(text)
    return out


def _comparison(node: exp.Expression, scope: _Scope, negated: bool) -> str:
    left, right = node.this, node.expression
    node_type = type(node)
    if isinstance(_unwrap(left), _VALUE_LIKE) and not isinstance(_unwrap(right), _VALUE_LIKE):
        left, right = right, left
        node_type = _MIRRORED.get(node_type, node_type)
    if negated:
        node_type = _NEGATED[node_type]
    same = _correlation_text(left, right, scope)
    if same is not None and node_type in (exp.EQ, exp.NullSafeEQ):
        return same
    right_node = _unwrap(right)
    truth = _flag_value(right_node) if isinstance(right_node, (exp.Boolean, exp.Literal)) else None
    if truth is not None and node_type in (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ):
        flag = _flag_phrase(left, truth == (node_type in (exp.EQ, exp.NullSafeEQ)), scope)
        if flag is not None:
            return flag
    left_text = _value(left, scope)
    counted = _count_comparison(left_text, node_type, right_node)
    if counted is not None:
        return counted
    if node_type in (exp.EQ, exp.NullSafeEQ):
        if isinstance(right_node, exp.Boolean):
            return f"{left_text} {_value(right_node, scope)}"
        if isinstance(right_node, (exp.Literal, exp.Neg) + _STRING_TYPES):
            return f"{left_text} {_value(right, scope)}"
    return f"{left_text} {_COMPARISONS[node_type]} {_value(right, scope)}"


_FLAG_PREFIXES = ("is ", "has ")


def _flag_value(node: Optional[exp.Expression]) -> Optional[bool]:
    """True/False for ``TRUE``/``1``/``FALSE``/``0`` (how flags are compared), else None."""
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal) and not node.is_string and node.this in ("1", "0"):
        return node.this == "1"
    return None


def _flag_words(node: Optional[exp.Expression]) -> Optional[tuple[str, str]]:
    """('is', 'open') for a flag column ``is_open`` / ``IsOpen`` / ``has_wifi``, else None."""
    node = _unwrap(node)
    if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
        return None
    words = humanize(node.name)
    for prefix in _FLAG_PREFIXES:
        if words.startswith(prefix) and len(words) > len(prefix):
            return prefix.strip(), words[len(prefix) :]
    return None


def _flag_phrase(node: Optional[exp.Expression], truth: bool, scope: _Scope) -> Optional[str]:
    """A flag test as words that read after 'with'/'have': 'wifi', 'no wifi', 'the open flag set'.

    >>> _flag_phrase(exp.column("has_wifi"), True, _Scope(None))
    'wifi'
    >>> _flag_phrase(exp.column("is_open"), False, _Scope(None))
    'the open flag not set'
    """
    found = _flag_words(node)
    if found is None:
        return None
    verb, rest = found
    if verb == "has":
        return rest if truth else f"no {rest}"
    return f"the {rest} flag {'set' if truth else 'not set'}"


def _main_flag(node: exp.Expression, scope: _Scope) -> Optional[str]:
    """'open' for a top-level ``is_open = 1`` (or ``is_open``) on the main table: it becomes an
    adjective of the rows ('How many open businesses are there?')."""
    if isinstance(node, (exp.EQ, exp.Is)):
        if not isinstance(node.expression, (exp.Literal, exp.Boolean)):
            return None
    elif not isinstance(node, exp.Column):
        return None
    if scope.main is None:
        return None
    column, truth = node, True
    if isinstance(node, (exp.EQ, exp.Is)):
        column, truth = node.this, _flag_value(_unwrap(node.expression))
    column = _unwrap(column)
    found = _flag_words(column) if truth else None
    if found is None or found[0] != "is" or " " in found[1] or scope.main is None:
        return None
    if column.table:
        if scope.resolve(column.table)[0] is not scope.main:
            return None
    elif len(scope.order) > 1:
        return None
    return found[1]


_COUNT_COMPARISONS: dict[type, str] = {
    exp.GT: "more than",
    exp.GTE: "at least",
    exp.LT: "fewer than",
    exp.LTE: "at most",
    exp.EQ: "exactly",
}


def _count_comparison(left_text: str, node_type: type, right: Optional[exp.Expression]) -> Optional[str]:
    """'more than 2 papers' for 'the number of papers' > 2 (None when it is not that shape).

    >>> _count_comparison("the number of papers", exp.GT, exp.Literal.number(2))
    'more than 2 papers'
    >>> _count_comparison("the number of papers", exp.EQ, exp.Literal.number(1))
    'exactly 1 paper'
    """
    word = _COUNT_COMPARISONS.get(node_type)
    if word is None or not left_text.startswith("the number of ") or not _is_number_literal(right):
        return None
    noun = left_text[len("the number of ") :]
    amount = right.this
    if amount in ("1", "1.0"):
        head, sep, tail = noun.partition(" with ")
        noun = singularize(head) + sep + tail
    return f"{word} {amount} {noun}"


def _correlation_text(left: exp.Expression, right: exp.Expression, scope: _Scope) -> Optional[str]:
    """'the same x' for ``inner.x = outer.x`` in a correlated subquery, else None."""
    if scope.parent is None or not isinstance(left, exp.Column) or not isinstance(right, exp.Column):
        return None
    left_outer = bool(left.table) and scope.resolve(left.table)[1]
    right_outer = bool(right.table) and scope.resolve(right.table)[1]
    if left_outer == right_outer:
        return None
    inner_column = right if left_outer else left
    return f"the same {humanize(inner_column.name)}"


def _pattern(node: exp.Expression, scope: _Scope, negated: bool) -> str:
    left = _value(node.this, scope)
    pattern = _unwrap(node.expression)
    prefix = "not " if negated else ""
    text = _folded_string(pattern)
    if text is None:
        return f"{left} {prefix}matching {_value(pattern, scope)}"
    if "_" in text.replace("\\_", ""):
        return f"{left} {prefix}matching the pattern {_quoted(text)}"
    pieces = [piece for piece in text.split("%") if piece]
    if not pieces:  # LIKE '%' matches every non-null value
        return f"no {left}" if negated else f"a known {left}"
    starts, ends = not text.startswith("%"), not text.endswith("%")
    if len(pieces) > 1 and not starts and not ends:
        if len(set(pieces)) == 1:  # '%,%,%': the piece at least twice
            times = {2: "twice", 3: "three times"}.get(len(pieces), f"{len(pieces)} times")
            return f"{left} {prefix}containing {_quoted(pieces[0])} at least {times}"
        followed = " followed by ".join(_quoted(piece) for piece in pieces)
        return f"{left} {prefix}containing {followed}"
    quoted = " then ".join(_quoted(piece) for piece in pieces)
    if starts and ends and len(pieces) == 1:
        return f"{left} not equal to {quoted}" if negated else f"{left} {quoted}"
    if starts and not ends and len(pieces) == 1:
        return f"{left} {prefix}starting with {quoted}"
    if ends and not starts and len(pieces) == 1:
        return f"{left} {prefix}ending with {quoted}"
    if not starts and not ends:
        return f"{left} {prefix}containing {quoted}"
    return f"{left} {prefix}matching the pattern {_quoted(text)}"


def _in(node: exp.Expression, scope: _Scope, negated: bool) -> str:
    left = _value(node.this, scope)
    query = node.args.get("query")
    if query is not None:
        word = "not in" if negated else "in"
        return f"{left} {word} the set of {_query_np(query, scope)}"
    return _one_of(left, node.expressions, scope, negated)


def _one_of(left: str, items: list[exp.Expression], scope: _Scope, negated: bool) -> str:
    """'genreid one of 1, 3 or 5' (at most a few values named, then 'N other values')."""
    shown = items if len(items) <= _MAX_LIST_VALUES + 1 else items[:_MAX_LIST_VALUES]
    values = [_value(item, scope) for item in shown]
    if len(items) > len(shown):  # never 'or 1 other values': that one is named instead
        values.append(f"{len(items) - len(shown)} other values")
    if not values:
        return f"{left} in a given list"
    if len(values) == 1:
        return f"{left} not equal to {values[0]}" if negated else f"{left} {values[0]}"
    if len(values) == 2 and not negated:
        return f"{left} {values[0]} or {values[1]}"
    return f"{left} {'not one of' if negated else 'one of'} {_and_list(values, 'or')}"


def _is(node: exp.Expression, scope: _Scope, negated: bool) -> str:
    target = _value(node.this, scope)
    other = node.expression
    if isinstance(other, exp.Null):
        return f"a known {target}" if negated else f"no {target}"
    if isinstance(other, exp.Boolean):
        truth = bool(other.this) != negated
        flag = _flag_phrase(node.this, truth, scope)
        return flag if flag is not None else f"{target} {'true' if truth else 'false'}"
    return f"{target} {'not equal to' if negated else 'equal to'} {_value(other, scope)}"


def _exists(node: exp.Expression, scope: _Scope, negated: bool) -> str:
    query = node.this
    while isinstance(query, exp.Subquery):
        query = query.this
    if not isinstance(query, exp.Select) or scope.depth >= _MAX_DEPTH:
        return "no matching record" if negated else "a matching record"
    inner = _build_scope(query, scope)
    inner.correlation = "drop"
    kept = [c for c in _filters(query) if not _is_correlation(c, inner)]
    cond = " and ".join(_cond(c, inner, nested=True) for c in kept)
    quantity = "no" if negated else "at least one"
    return f"{quantity} {inner.entity().singular}" + (f" with {cond}" if cond else "")


def _is_correlation(node: exp.Expression, scope: _Scope) -> bool:
    """A comparison of a column of this scope with a column of an outer scope."""
    if not isinstance(node, (exp.EQ, exp.NullSafeEQ)):
        return False
    left, right = node.this, node.expression
    if not isinstance(left, exp.Column) or not isinstance(right, exp.Column):
        return False
    sides = [bool(col.table) and scope.resolve(col.table)[1] for col in (left, right)]
    return sides[0] != sides[1]


def _where_of(select: exp.Select) -> Optional[exp.Expression]:
    where = select.args.get("where")
    return where.this if isinstance(where, exp.Where) else None


# ---------------------------------------------------------------------------------------------
# SELECT: parts and templates
# ---------------------------------------------------------------------------------------------

_INFORMATIVE_SUFFIXES = ("category", "type", "class", "group", "bucket", "band", "label", "level", "tier", "status")
_GENERIC_ALIAS_WORDS = frozenset(
    {"ratio", "result", "value", "values", "total", "count", "amount", "number", "percentage",
     "percent", "diff", "difference", "output", "answer", "metric", "expr", "col", "val"}
)


def _is_plain(node: exp.Expression) -> bool:
    """Columns, literals and aggregates of a column: described from the expression itself."""
    node = _unwrap(node)
    if isinstance(node, (exp.Column, exp.Star, exp.Literal, exp.Placeholder, exp.Parameter)):
        return True
    if type(node) in _AGGREGATE_WORDS or isinstance(node, exp.Count):
        arg = node.this
        if isinstance(arg, exp.Distinct):
            arg = arg.expressions[0] if len(arg.expressions) == 1 else None
        arg = _unwrap(arg)
        return arg is None or isinstance(arg, (exp.Column, exp.Star))
    return False


def _informative_alias(alias: str) -> Optional[str]:
    if not alias:
        return None
    words = humanize(alias)
    if " " not in words and (len(words) < 4 or words in _GENERIC_ALIAS_WORDS):
        return None
    return words


def _item_text(node: exp.Expression, alias: str, scope: _Scope) -> str:
    """One selected item as a noun phrase, preferring a human alias for complex expressions."""
    inner = _unwrap(node) if not isinstance(node, exp.Alias) else node.this
    if isinstance(inner, exp.Column):
        computed = _computed_by_body(inner, scope)
        if computed is not None:
            return f"{_value(inner, scope)} ({computed})"
    case = inner
    while isinstance(case, exp.Paren):  # `(CASE .. END) AS x`
        case = case.this
    if isinstance(case, (exp.Case, exp.If)) and (case is inner or _has_filtered_query(case, scope)):
        basis = _value(case, scope)  # 'a category based on x', or 'x if c, otherwise y'
        alias_words = humanize(alias) if alias else ""
        if not basis.startswith("a category "):  # the branches, set apart from the other items
            return f"the {alias_words} ({basis})" if alias_words else f"a value ({basis})"
        if not alias_words:
            return basis
        if alias_words.endswith(_INFORMATIVE_SUFFIXES):
            return f"the {alias_words} {basis[len('a category ') :]}"
        return f"the {alias_words} category {basis[len('a category ') :]}"
    if not _is_plain(inner):
        alias_words = _informative_alias(alias)
        if alias_words is not None and not (
            alias_words.rsplit(" ", 1)[-1] in _RATIO_WORDS and _is_ratio(inner)
        ):
            if _has_filtered_query(inner, scope):  # the alias alone would hide what it counts or keeps
                return f"the {alias_words} ({_value(inner, scope)})"
            return f"the {alias_words}"
    return _value(inner, scope)


def _computed_by_body(column: exp.Column, scope: _Scope) -> Optional[str]:
    """What a CTE's or derived table's filtered query computes for ``column``, said once."""
    if not any(source.items for source in scope.order):
        return None
    if column.table:
        source = scope.resolve(column.table)[0]
    else:
        source = scope.main if len(scope.order) == 1 else None
    if source is None or not source.items:
        return None
    return source.items.pop(column.name.lower(), None)


def _has_filtered_query(node: exp.Expression, scope: _Scope) -> bool:
    """Whether a query nested in ``node`` has a WHERE or HAVING of its own, or reads a CTE that
    has one (queries nested in those are not looked into: the walk stays small)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Select):
            if current.args.get("where") is not None or current.args.get("having") is not None:
                return True
            from_ = current.args.get("from_")
            table = from_.this if isinstance(from_, exp.From) else None
            body = scope.ctes.get(table.name.lower()) if isinstance(table, exp.Table) and scope.ctes else None
            if isinstance(body, exp.Select) and (
                body.args.get("where") is not None or body.args.get("having") is not None
            ):
                return True
            continue
        stack.extend(current.iter_expressions())
    return False


_RATIO_WORDS = frozenset({"ratio", "percentage", "percent", "rate", "proportion", "share", "fraction"})


def _is_ratio(node: exp.Expression) -> bool:
    """``a / b`` (or ``a * 100 / b``) of two non-constants: its operands say more than
    an alias like ``rating_ratio``."""
    node = _unwrap(node)
    if isinstance(node, exp.Mul):
        node = _unwrap(node.this)
    return isinstance(node, (exp.Div, exp.SafeDivide)) and not _is_number_literal(node.expression)


class _Parts:
    """The rendered pieces of one SELECT, before a template assembles them."""

    __slots__ = (
        "scope", "named", "cond", "items", "sole_count", "sole_distinct_count", "has_aggregate",
        "groups", "having", "windows", "order_keys", "limit", "offset", "distinct", "matching",
    )

    def __init__(self, scope: _Scope) -> None:
        self.scope = scope
        self.named = ""
        self.cond = ""
        self.items: list[str] = []
        self.sole_count = False
        self.sole_distinct_count: Optional[str] = None
        self.has_aggregate = False
        self.groups: list[str] = []
        self.having = ""
        self.windows: list[str] = []
        self.order_keys: list[tuple[str, bool]] = []
        self.limit: Optional[str] = None
        self.offset: Optional[str] = None
        self.distinct = False
        self.matching = ""  # what an outer join's ON conditions keep of the joined table


def _named_phrase(node: exp.Expression, scope: _Scope) -> Optional[str]:
    """' named "X"' for ``name = 'X'`` on the main table (and ' titled "X"' for titles)."""
    if not isinstance(node, exp.EQ):
        return None
    column, text = node.this, _string_value(node.expression)
    if not isinstance(column, exp.Column) or text is None:
        return None
    if column.table and scope.resolve(column.table)[0] is not scope.main:
        return None
    if not column.table and len(scope.order) > 1:
        return None
    verb = {"name": "named", "title": "titled"}.get(humanize(column.name))
    return f' {verb} "{text}"' if verb else None


def _filters(select: exp.Select) -> list[exp.Expression]:
    """WHERE conjuncts plus non-key conditions from JOIN ... ON (e.g. ``AND f.stops = 0``)."""
    filters = _conjuncts(_where_of(select))
    for join in select.args.get("joins") or ():
        if join.side:  # an outer join's ON conditions do not filter the result
            continue
        for conjunct in _conjuncts(join.args.get("on")):
            both_columns = isinstance(conjunct, exp.EQ) and isinstance(
                conjunct.this, exp.Column
            ) and isinstance(conjunct.expression, exp.Column)
            if not both_columns and not isinstance(conjunct, exp.Boolean):
                filters.append(conjunct)
    return filters


def _outer_join_matching(select: exp.Select, scope: _Scope) -> str:
    """'flights with connections 0' for ``LEFT JOIN flight ON .. AND flight.connections = 0``.

    An outer join's extra ON conditions do not drop rows of the main table, but they decide
    which joined rows are counted or shown, so the question says them apart from the filters.
    """
    joins = select.args.get("joins")
    if not joins:
        return ""
    phrases: list[str] = []
    for join in joins:
        if not join.side:
            continue
        extra = [
            conjunct
            for conjunct in _conjuncts(join.args.get("on"))
            if not (
                isinstance(conjunct, exp.EQ)
                and isinstance(conjunct.this, exp.Column)
                and isinstance(conjunct.expression, exp.Column)
            )
        ]
        if not extra:
            continue
        source = scope.sources.get((join.this.alias_or_name or "").lower())
        noun = source.plural if source is not None else "related records"
        phrases.append(f"{noun} with " + " and ".join(_cond(c, scope, nested=True) for c in extra))
    return " and ".join(phrases)


def _limit_parts(select: exp.Expression, scope: _Scope) -> tuple[Optional[str], Optional[str]]:
    limit_node = select.args.get("limit")
    limit: Optional[str] = None
    if isinstance(limit_node, exp.Limit):
        limit = _value(limit_node.expression, scope)
    elif isinstance(limit_node, exp.Fetch):
        count = limit_node.args.get("count")
        limit = _value(count, scope) if count is not None else "1"
    offset_node = select.args.get("offset")
    offset = _value(offset_node.expression, scope) if isinstance(offset_node, exp.Offset) else None
    return limit, offset


def _positional(node: exp.Expression, items: list[str]) -> Optional[str]:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        index = int(node.this) - 1
        if 0 <= index < len(items):
            return items[index]
    return None


def _is_nulls_sort_key(node: exp.Expression) -> bool:
    """``ORDER BY x IS NULL`` / ``CASE WHEN x IS NULL THEN 1 ELSE 0 END``: nulls placement only."""
    node = _unwrap(node)
    if isinstance(node, exp.Is):
        return True
    branch = node.args.get("ifs") if isinstance(node, exp.Case) else None
    return (
        branch is not None
        and len(branch) == 1
        and isinstance(_unwrap(branch[0].this), exp.Is)
        and isinstance(branch[0].args.get("true"), exp.Literal)
    )


def _short_alias(node: exp.Expression, scope: _Scope) -> Optional[str]:
    """'the ratio' for ``ORDER BY ratio`` when the item it names has a long description."""
    if not isinstance(node, exp.Column) or node.table:
        return None
    alias = node.name
    text = scope.select_aliases.get(alias.lower())
    if text is None or len(text) <= 40:
        return text
    return f"the {humanize(alias)}"


def _contains_aggregate(node: exp.Expression) -> bool:
    """Whether an aggregate applies to this SELECT (not one inside a subquery or a window)."""
    for found in node.find_all(exp.AggFunc):
        current = found
        while current is not node:
            parent = current.parent
            if parent is None or isinstance(parent, (exp.Subquery, exp.Select, exp.Window)):
                break
            current = parent
        else:
            return True
    return False
    stack = list(node.iter_expressions())
    while stack:
        current = stack.pop()
        if isinstance(current, exp.AggFunc):
            return True
        if not isinstance(current, _AGGREGATE_BARRIERS):
            stack.extend(current.iter_expressions())
    return False


def _render_select(select: exp.Select, parent: Optional[_Scope]) -> _Parts:
    scope = _build_scope(select, parent)
    parts = _Parts(scope)

    conditions: list[str] = [source.cond for source in scope.order if source.cond]
    grouped = select.args.get("group") is not None  # 'the number of badges named X' reads wrong
    for conjunct in _filters(select):
        adjective = _main_flag(conjunct, scope)
        if adjective is not None:  # 'open businesses', said in every template that names the rows
            main = scope.main
            main.singular, main.plural = f"{adjective} {main.singular}", f"{adjective} {main.plural}"
            continue
        named = None if parts.named or grouped else _named_phrase(conjunct, scope)
        if named is not None:
            parts.named = named
        elif not (scope.correlation == "drop" and _is_correlation(conjunct, scope)):
            conditions.append(_cond(conjunct, scope, nested=True))
    parts.cond = " and ".join(_merge_exclusions(conditions))
    scope.entity_cond = parts.cond
    matching = [source.matching for source in scope.order if source.matching]
    matching.append(_outer_join_matching(select, scope))
    parts.matching = " and ".join(m for m in matching if m)

    scope.counted = _counted_source(select, scope)
    expressions = list(select.expressions)
    if len(expressions) == 1 and select.args.get("group") is None:
        only = _unwrap(expressions[0])
        if _is_count_all(only):
            parts.sole_count = True
        elif isinstance(only, exp.Count) and isinstance(only.this, exp.Distinct):
            counted = only.this.expressions
            if len(counted) == 1 and _single_branch(counted[0]) is None:
                noun = _counted_noun(counted[0], scope)
                parts.sole_count = noun == scope.entity().plural  # distinct keys: the rows
                parts.sole_distinct_count = None if parts.sole_count else noun
        elif isinstance(only, exp.Count) and isinstance(_unwrap(only.this), exp.Column):
            parts.sole_count = _counted_noun(only.this, scope) == scope.entity().plural

    positional: list[str] = []
    windows_seen: list[str] = []
    for expression in expressions:
        alias = expression.alias if isinstance(expression, exp.Alias) else ""
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        if isinstance(inner, exp.Window):
            clause, phrase = _window_phrase(inner, scope)
            windows_seen.append(clause)
            text = f"the {humanize(alias)}" if _informative_alias(alias) else phrase
        else:
            if not parts.has_aggregate and _contains_aggregate(inner):
                parts.has_aggregate = True
            text = _item_text(expression, alias, scope)
            parts.items.append(text)
        positional.append(text)
        if alias:
            scope.select_aliases.setdefault(alias.lower(), text)
    parts.windows = windows_seen

    scope.use_aliases = True
    group = select.args.get("group")
    if isinstance(group, exp.Group):
        for key in group.expressions:
            if isinstance(key, (exp.Rollup, exp.Cube)) and key.expressions:
                key = key.expressions[0]
            text = _positional(key, positional) or _value(key, scope)
            if text in parts.items:
                parts.items.remove(text)  # a grouping key is not asked for again
            if len(scope.order) > 1 and isinstance(key, exp.Column):
                scope.qualify_main = True  # 'for each playlist name', not 'for each name'
                text = _value(key, scope)
                scope.qualify_main = False
            if text not in parts.groups:
                parts.groups.append(text)
    having = select.args.get("having")
    if isinstance(having, exp.Having):
        parts.having = _cond(having.this, scope)
    order = select.args.get("order")
    if isinstance(order, exp.Order):
        for ordered in order.expressions:
            target = ordered.this if isinstance(ordered, exp.Ordered) else ordered
            if _is_nulls_sort_key(target):
                continue
            text = (
                _positional(target, positional)
                or _short_alias(target, scope)
                or _value(target, scope)
            )
            if parts.cond and text.endswith(" with " + parts.cond):  # said once is enough
                text = text[: -len(" with " + parts.cond)]
            parts.order_keys.append((text, bool(ordered.args.get("desc"))))
    parts.limit, parts.offset = _limit_parts(select, scope)
    parts.distinct = isinstance(select.args.get("distinct"), exp.Distinct)
    return parts


def _counted_source(select: exp.Select, scope: _Scope) -> Optional[_Source]:
    """The joined table whose rows ``COUNT(*)`` counts per group, when the groups are main rows.

    ``employee JOIN customer .. GROUP BY employee.lastname``: each group holds one row per
    customer, so the count is of customers, not of employees.
    """
    group = select.args.get("group")
    if not isinstance(group, exp.Group) or not select.args.get("joins") or scope.main is None:
        return None
    keyed: list[_Source] = []
    for key in group.expressions:
        key = _unwrap(key)
        if not isinstance(key, exp.Column) or not key.table:
            return None
        source = scope.resolve(key.table)[0]
        if source is None:
            return None
        keyed.append(source)
    if not any(source is scope.main for source in keyed):
        return None
    for source in reversed(scope.order):
        if source.how in ("inner", "outer") and not any(source is seen for seen in keyed):
            return source
    return None


def _join_phrase(parts: _Parts) -> list[str]:
    """Singular names of INNER-joined leaf tables that nothing else in the question mentions.

    Bridge tables (joined to two or more others, like ``playlisttrack``) are left out.
    """
    scope = parts.scope
    names: list[str] = []
    for source in scope.order:
        if source.how != "inner" or source is scope.main or source.links > 1:
            continue
        if any(seen is source for seen in scope.mentioned):
            continue
        if source.singular not in names and source.singular != scope.entity().singular:
            names.append(source.singular)
    return names


def _entity_phrase(parts: _Parts, plural: bool, cond: Optional[str] = None) -> str:
    """'every track with its album and milliseconds greater than 5' / 'all tracks'."""
    scope = parts.scope
    cond = parts.cond if cond is None else cond
    joined = _join_phrase(parts)
    entity = scope.entity()
    noun = entity.plural if plural else entity.singular
    text = noun + parts.named
    if joined:
        text += f" with {'their' if plural else 'its'} {_and_list(joined)}"
    if cond:
        text += f" {'and' if joined else 'with'} {cond}"
    if text == noun:
        return f"all {noun}" if plural else f"every {noun}"
    return text if plural else f"every {text}"


def _items_text(items: list[str]) -> str:
    if len(items) > _MAX_ITEMS:
        shown = items[: _MAX_ITEMS - 1]
        return _noun_list(shown + [f"{len(items) - len(shown)} other values"])
    return _noun_list(items)


def _aggregate_suffix(parts: _Parts, consumed: bool) -> str:
    """' of all tracks' / ' of tracks with x' / ', among tracks with x' / ''."""
    scope = parts.scope
    if scope.main is None:
        return ""
    if consumed:
        return ""
    if scope.entity_mentioned:
        return f", among {_entity_phrase(parts, True)}" if (parts.cond or parts.named) else ""
    return f" of {_entity_phrase(parts, True)}"


def _order_sentence(keys: list[tuple[str, bool]], limit: Optional[str], offset: Optional[str]) -> str:
    skip = f", skipping the first {offset}" if offset else ""
    if keys:
        first_text, first_desc = keys[0]
        then = "".join(f", then by {_strip_article(text)}" for text, _ in keys[1:])
        if limit is None:
            direction = "descending" if first_desc else "ascending"
            order_text = f"Sort the results by {first_text} in {direction} order{then}"
            return order_text + (f"{skip.replace(', skipping', ' and skip')}" if skip else "") + "."
        if limit == "1":
            extreme = "highest" if first_desc else "lowest"
            return f"Show only the one with the {extreme} {_strip_article(first_text)}{then}{skip}."
        if first_desc:
            return f"Show the top {limit} by {first_text}, highest first{then}{skip}."
        return f"Show the lowest {limit} by {first_text}{then}{skip}."
    if limit is not None:
        return f"Show only {'one result' if limit == '1' else f'the first {limit}'}{skip}."
    if offset:
        return f"Skip the first {offset} results."
    return ""


def _question_from_parts(parts: _Parts) -> str:
    scope = parts.scope
    consumed = not scope.entity_cond and bool(parts.cond)  # a COUNT(*) phrase embedded the WHERE
    windows = "".join(f", {clause}" for clause in parts.windows)
    if parts.sole_count:
        entity = scope.entity()
        joined = _join_phrase(parts)
        needs = [f"a matching {_and_list(joined)}"] if joined else []
        if parts.cond:
            needs.append(parts.cond)
        head = f"How many {entity.plural}{parts.named}"
        main = f"{head} have {' and '.join(needs)}" if needs else f"{head} are there"
        main += windows + "?"
    elif parts.sole_distinct_count is not None and not parts.groups:
        main = (
            f"How many distinct {parts.sole_distinct_count} are there among "
            f"{_entity_phrase(parts, True)}{windows}?"
        )
    elif parts.groups:
        remaining = parts.items
        groups = _and_list([_strip_article(group) for group in parts.groups])
        if remaining:
            verb = "is" if len(remaining) == 1 else "are"
            main = (
                f"For each {groups}, what {verb} {_items_text(remaining)}"
                f"{_aggregate_suffix(parts, consumed)}{windows}?"
            )
        else:
            main = f"List each distinct {groups} of {_entity_phrase(parts, True)}{windows}."
        if parts.having:
            main += f" Only include groups with {parts.having}."
    elif parts.has_aggregate or scope.main is None:
        verb = "is" if len(parts.items) == 1 else "are"
        main = f"What {verb} {_items_text(parts.items)}{_aggregate_suffix(parts, consumed)}{windows}?"
        if parts.having:  # HAVING without GROUP BY: one row or none
            main += f" Only answer if there are {parts.having}." if parts.having.startswith(
                ("more than", "at least", "fewer than", "at most", "exactly")
            ) else f" Only answer if the result has {parts.having}."
    else:
        if parts.distinct:
            main = f"List each distinct {_strip_article(_items_text(parts.items))} of {_entity_phrase(parts, True)}"
        else:
            main = f"List {_items_text(parts.items)} of {_entity_phrase(parts, False)}"
        main += windows + "."
    if parts.matching:
        main += f" Match only {parts.matching}."
    order = _order_sentence(parts.order_keys, parts.limit, parts.offset)
    return f"{main} {order}" if order else main


def _np_from_parts(parts: _Parts) -> str:
    """The same SELECT as a noun phrase, for subqueries and set operations."""
    scope = parts.scope
    consumed = not scope.entity_cond and bool(parts.cond)
    if parts.sole_count:
        text = f"the number of {_entity_phrase(parts, True)}"
    elif parts.groups:
        remaining = parts.items
        groups = _and_list(parts.groups)
        if remaining:
            text = f"{_items_text(remaining)}{_aggregate_suffix(parts, consumed)} for each {groups}"
        else:
            text = f"the {_strip_article(groups)} of {_entity_phrase(parts, True)}"
        if parts.having:
            text += f", in groups with {parts.having}"
    elif parts.has_aggregate or scope.main is None:
        text = f"{_items_text(parts.items)}{_aggregate_suffix(parts, consumed)}"
        if parts.having:
            text += f", if it has {parts.having}"
    else:
        distinct = "distinct " if parts.distinct else ""
        items = _items_text(parts.items)
        if distinct and items.startswith("the "):
            items = items[4:]
        text = f"{'the ' + distinct if distinct else ''}{items} of {_entity_phrase(parts, True)}"
    text += "".join(f", {clause}" for clause in parts.windows)
    if parts.matching:
        text += f", matching only {parts.matching}"
    if parts.limit is not None and parts.order_keys:
        key, desc = parts.order_keys[0]
        if parts.limit == "1":
            text += f", taking the one with the {'highest' if desc else 'lowest'} {_strip_article(key)}"
        else:
            text += f", taking the {'top' if desc else 'lowest'} {parts.limit} by {key}"
    elif parts.limit is not None:
        text += f", taking the first {parts.limit}"
    return text


def _query_np(node: exp.Expression, scope: Optional[_Scope]) -> str:
    """Describe a nested query as a noun phrase ('the average milliseconds of all tracks')."""
    while isinstance(node, (exp.Subquery, exp.Paren)):
        node = node.this
    depth = scope.depth + 1 if scope else 0
    if depth > _MAX_DEPTH:
        return "a nested result"
    if isinstance(node, exp.Select):
        return _np_from_parts(_render_select(node, scope))
    if isinstance(node, exp.SetOperation):
        left, right = _query_np(node.this, scope), _query_np(node.expression, scope)
        return f"{left} {_SET_WORDS.get(type(node), 'combined with')} {right}"
    return "a nested result"


_SET_WORDS: dict[type, str] = {
    exp.Union: "combined with",
    exp.Intersect: "that are also in",
    exp.Except: "except those in",
}


def _set_question(node: exp.SetOperation) -> str:
    left, right = _query_np(node.this, None), _query_np(node.expression, None)
    if isinstance(node, exp.Intersect):
        main = f"List {left} that are also in {right}."
    elif isinstance(node, exp.Except):
        main = f"List {left}, except those in {right}."
    else:
        duplicates = ", keeping duplicates" if node.args.get("distinct") is False else ""
        main = f"List {left}, combined with {right}{duplicates}."
    first = node.this
    while isinstance(first, (exp.SetOperation, exp.Subquery)):
        first = first.this
    scope = _build_scope(first, None) if isinstance(first, exp.Select) else _Scope(None)
    keys = _order_keys(node.args.get("order"), scope)
    limit, offset = _limit_parts(node, scope)
    order = _order_sentence(keys, limit, offset)
    return f"{main} {order}" if order else main


def _dml_question(node: exp.Expression) -> str:
    table = node.this
    while isinstance(table, exp.Schema):
        table = table.this
    name = humanize(table.name) if isinstance(table, exp.Table) and table.name else "record"
    singular = singularize(name)
    plural = pluralize(singular)
    scope = _Scope(None)
    scope.main = _Source(singular, plural, "main")
    where = node.args.get("where")
    cond = _cond(where.this, scope) if isinstance(where, exp.Where) else ""
    with_cond = f" with {cond}" if cond else ""
    if isinstance(node, exp.Insert):
        return f"Add new {singular} records."
    if isinstance(node, exp.Delete):
        return f"Remove the {plural}{with_cond}." if cond else f"Remove all {plural}."
    fields = [_value(e.this, scope) for e in node.expressions if isinstance(e, exp.EQ)]
    target = f"the {_and_list(fields)}" if fields else "the values"
    return f"Update {target} of {'every ' + singular + with_cond if cond else 'all ' + plural}."


def render_question(tree: exp.Expression) -> str:
    """The rules alone: a question for a query, or '' for a statement they do not describe.

    Unlike :func:`describe_sql` this may raise on a tree the rules do not expect, and its text
    is not yet capitalized, punctuated or capped; tests use it to see that the rules (not the
    fallback) handled a query.

    >>> from sqlglot import parse_one
    >>> render_question(parse_one("SELECT AVG(milliseconds) FROM track"))
    'What is the average milliseconds of all tracks?'
    >>> render_question(parse_one("CREATE TABLE t (a INT)"))
    ''
    """
    node = tree
    while isinstance(node, (exp.Subquery, exp.Paren)):
        node = node.this
    if isinstance(node, exp.Select):
        return _question_from_parts(_render_select(node, None))
    if isinstance(node, exp.SetOperation):
        return _set_question(node)
    if isinstance(node, (exp.Insert, exp.Update, exp.Delete)):
        return _dml_question(node)
    return ""


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

_TRAILING_FILLERS = frozenset(
    {"and", "or", "of", "with", "the", "a", "an", "to", "by", "in", "than", "between", "for",
     "each", "named", "titled", "that", "are", "is", "not", "then", "either", "neither", "nor",
     "one", "set", "among", "before", "after", "plus", "times", "divided", "at", "no", "all"}
)


_SENTENCE_END = re.compile(r"[.?](?=\s|$)")


def _truncate(text: str, limit: int) -> str:
    """Cut at a word boundary below ``limit``, drop dangling filler words and half-quoted values,
    and end the cut sentence as it would have ended ('?' or '.')."""
    body = text[: limit - 1]
    cut = body.rfind(" ")
    if cut > limit // 2:
        body = body[:cut]
    end = _SENTENCE_END.search(text, len(body))
    ending = end.group() if end else "."
    if body.count('"') % 2:
        body = body[: body.rfind('"')]
    words = body.rstrip(" ,;:(-").split(" ")
    while len(words) > 1 and words[-1].lower().strip(",") in _TRAILING_FILLERS:
        words.pop()
    body = " ".join(words).rstrip(" ,;:(-")
    return body if body.endswith(("?", ".")) else body + ending


def _finish(text: str) -> str:
    """Single spaces, capital first letter, terminal punctuation, length cap."""
    text = " ".join(text.split())
    if not text:
        return _FALLBACK_QUESTION
    text = text[0].upper() + text[1:]
    if text[-1] not in ".?":
        text += "."
    if len(text) > MAX_QUESTION_CHARS:
        text = _truncate(text, MAX_QUESTION_CHARS)
    return text


def generic_question(tree: exp.Expression) -> str:
    """A generic but valid question naming the selected columns and the tables read.

    Used when the rules cannot describe a statement; never raises.

    >>> from sqlglot import parse_one
    >>> generic_question(parse_one("SELECT a.x, b.y FROM t1 AS a JOIN t2 AS b ON a.id = b.id WHERE a.z > 1"))
    'Show the x and y from the t1 and t2 records matching the given conditions.'
    """
    try:
        columns: list[str] = []
        query = tree if isinstance(tree, exp.Query) else tree.find(exp.Query)
        selects = query.selects if query is not None else []
        for selected in selects:
            for column in selected.find_all(exp.Column):
                words = humanize(column.name)
                if words not in columns:
                    columns.append(words)
        tables: list[str] = []
        for table in tree.find_all(exp.Table):
            words = humanize(table.name) if table.name else ""
            if words and words not in tables:
                tables.append(words)
        matching = " matching the given conditions" if tree.find(exp.Where) is not None else ""
        shown = f"the {_and_list(columns[:4])}" if columns else "the data"
        if not tables:
            return _finish(f"Show {shown}{matching}.") if columns else _FALLBACK_QUESTION
        return _finish(f"Show {shown} from the {_and_list(tables[:3])} records{matching}.")
    except Exception:  # noqa: BLE001 - the last resort must not fail
        return _FALLBACK_QUESTION


def describe_sql(tree: exp.Expression) -> str:
    """A readable English question for a parsed SQL statement, from rules alone.

    Deterministic (same tree, same string), never raises, ends with '?' or '.', starts with a
    capital letter and is at most :data:`MAX_QUESTION_CHARS` characters long. The tree is read,
    never modified and never turned back into SQL.

    >>> from sqlglot import parse_one
    >>> describe_sql(parse_one("SELECT name FROM artist"))
    'List the name of every artist.'
    >>> describe_sql(parse_one("SELECT COUNT(*) FROM track WHERE milliseconds > 300000"))
    'How many tracks have milliseconds greater than 300000?'
    >>> describe_sql(parse_one(
    ...     "SELECT a.name, COUNT(*) FROM album al JOIN artist a ON al.artistid = a.artistid "
    ...     "GROUP BY a.name ORDER BY COUNT(*) DESC LIMIT 5"))
    'For each artist name, what is the number of albums? Show the top 5 by the number of albums, highest first.'
    """
    try:
        text = render_question(tree)
    except Exception:  # noqa: BLE001 - any surprise degrades to the generic sentence
        text = ""
    if not text:
        return generic_question(tree)
    return _finish(text)
