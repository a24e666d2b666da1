"""Commitments: which sentences of a reply say that money moves or that an action of ours happens, and which of
those something checked backs.

A sentence *claims* an action when, in any tense or voice, it says that a refund, a reimbursement, a credit,
compensation, a voucher or gift card, money back, a discount, a replacement, a cancellation, a return label or
another act of ours for the customer happens, happened or will happen: "we will refund", "I've issued", "let me
credit", "we have gone ahead and refunded", "your refund has been processed", "order SB-20001 was refunded", "a
replacement is on its way", "you'll get your money back", "here is a voucher", "Refund approved: 45.00 EUR".
What is only possible or conditional ("you can return items for a full refund", "once your return arrives"),
negated ("no refund has been issued"), about a person checking ("our team will review your refund request"), or
a general rule of the help centre ("refunds usually appear within 3 to 5 business days") claims nothing.

What backs a claim is `agents.grounding.commitment_backed`'s: a passage's own sentence, a refund the run
proposes, or a refund the order lookup already shows, told as done.
"""

from __future__ import annotations

import re

from conversations.orders import ORDER_IDS_IN_TEXT

# --- The language of claims (matched on `claim_text`: lower case, contractions spelled out) ----------------------

_CONTRACTIONS = (
    (r"[\u2018\u2019\u0060\u00b4]", "'"),
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b|\bcannot\b", "can not"),
    (r"n't\b", " not"),
    (r"\blet's\b", "let us"),
    (r"'s\s+been\b", " has been"),
    (r"\b(it|that|there|here|what|who|this|everything)'s\b", r"\1 is"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'re\b", " are"),
    (r"'m\b", " am"),
    (r"'d\b", " would"),
    (r"\bgonna\b", "going to"),
    (r"[ \t]+", " "),
)
ISO_CODES = "EUR|USD|GBP|CHF|SEK|NOK|DKK|PLN|CZK|JPY|CAD|AUD"
#: Amounts of money in a sentence: next to a currency, or with cents.
MONEY = re.compile(
    rf"(?:[€$£]\s*(\d+(?:[.,]\d+)?))|(?:(\d+(?:[.,]\d+)?)\s*(?:(?:{ISO_CODES}|euros?|dollars?|pounds?)\b|[€$£]))"
    r"|(\d+[.,]\d{2})\b",
    re.IGNORECASE,
)
_MONEY = f"(?:{MONEY.pattern})"
#: Things of value we could give: the objects of a claim.
_VALUE = (
    r"refunds?|reimbursements?|(?:store\s+)?credits?(?!\s+cards?)|compensation|vouchers?|coupons?|gift\s*cards?"
    r"|discounts?|goodwill(?:\s+gesture)?|cash\s*back|rebates?|bonus(?:es)?|money(?:\s+back)?|replacements?"
    r"|new\s+one|exchange|cancellation|(?:prepaid\s+|return\s+|shipping\s+)?labels?|free\s+of\s+charge|for\s+free"
    r"|at\s+no\s+(?:extra\s+)?cost|free\s+(?:shipping|delivery|returns?|upgrade)|upgrade"
)
TOPIC = re.compile(rf"\b(?:{_VALUE})\b|{_MONEY}", re.IGNORECASE)
#: Words before a thing of value that make it no claim: asking for it, a rule about it, a person deciding on it.
_TOPIC_NOT_AFTER = re.compile(
    r"(?:\b(?:request(?:s|ed|ing)?|ask(?:s|ed|ing)?|appl(?:y|ied|ying|ication)|eligible|qualif(?:y|ies|ied)|entitled"
    r"|right|about|regarding|concerning|whether|discuss|decid\w*|decision|check\w*|review\w*|assess\w*|look(?:ing)?"
    r"|no|not|without|any)\s+(?:for\s+|on\s+|to\s+|about\s+|into\s+|at\s+|of\s+)?(?:a\s+|an\s+|the\s+|your\s+|this\s+)?"
    r"(?:[\w-]+\s+)?)$"
)
#: Words after a thing of value that make it no claim: "refund request", "refund policy".
_TOPIC_NOT_BEFORE = re.compile(
    r"^\s+(?:request|requests|claim|claims|application|policy|policies|form|question|questions|enquiry|inquiry"
    r"|eligibility|process|window|rules|terms|options?|method)\b"
)
#: A determiner that makes a thing of value this customer's ("your refund", "a voucher", "the full refund").
_DETERMINER = re.compile(r"\b(?:your|the|this|that|a|an|my|full|partial)\s+(?:[\w-]+\s+){0,2}$")

#: Verbs that move money by themselves.
_MOVING = (
    r"refund(?:ed|ing)?|reimburs(?:e|ed|ing)|credit(?:ed|ing)?|compensat(?:e|ed|ing)|waiv(?:e|ed|ing)"
    r"|cancel(?:l?ed|l?ing)?|replac(?:e|ed|ing)|deposit(?:ed|ing)?|transfer(?:red|ring)?|pa(?:y|id|ying)\s+(?:you\s+)?back"
)
#: Verbs of doing something for the customer: a claim with "we"/"I" and an auxiliary, else with a thing of value.
_DOING = (
    r"pa(?:y|id|ying)|send|sent|sending|ship(?:ped|ping)?|issu(?:e|ed|ing)|giv(?:e|en|ing)|gave|grant(?:ed|ing)?"
    r"|offer(?:ed|ing)?|provid(?:e|ed|ing)|arrang(?:e|ed|ing)|add(?:ed|ing)?|process(?:ed|ing)?|approv(?:e|ed|ing)"
    r"|expedit(?:e|ed|ing)|upgrad(?:e|ed|ing)|cover(?:ed|ing)?"
)
#: Verbs of handling: a claim only with a thing of value ("a return label has been emailed").
_HANDLING = (
    r"appl(?:y|ied|ying)|initiat(?:e|ed|ing)|complet(?:e|ed|ing)|exchang(?:e|ed|ing)|post(?:ed|ing)?|e-?mail(?:ed|ing)?"
    r"|mail(?:ed|ing)?|return(?:ed|ing)?|releas(?:e|ed|ing)|load(?:ed|ing)?|top(?:ped|ping)?\s+up|confirm(?:ed|ing)?"
    r"|book(?:ed|ing)?|generat(?:e|ed|ing)|creat(?:e|ed|ing)|attach(?:ed|ing)?|enclos(?:e|ed|ing)|prepar(?:e|ed|ing)"
    r"|print(?:ed|ing)?|repair(?:ed|ing)?|sort(?:ed|ing)?\s+out|(?:take|taken|took|taking)\s+care\s+of"
    r"|authori[sz](?:e|ed|ing)|finali[sz](?:e|ed|ing)|settl(?:e|ed|ing)|revers(?:e|ed|ing)|honou?r(?:ed|ing)?"
    r"|extend(?:ed|ing)?|deliver(?:ed|ing)?|dispatch(?:ed|ing)?|put"
)
_VERB = rf"(?:{_MOVING}|{_DOING}|{_HANDLING})"
#: Verbs in the third person ("your replacement ships tomorrow").
_VERB_S = r"(?:refund|reimburse|credit|compensate|pay|send|ship|issue|give|arrive|go|come|reache|appear|land)s"
#: Words that may stand between an auxiliary and its verb ("will now be", "have gone ahead and"), and one
#: coordination ("will check it and refund").
_ADVERBS = (
    r"(?:\s+(?:just|now|already|also|then|today|tomorrow|soon|shortly|still|immediately|personally|right\s+away"
    r"|hereby|actually|definitely|certainly|indeed|in\s+full|\w+ly|be|been|being|have|has|had|get|got|gotten|do|did"
    r"|(?:gone|went|go|going)\s+ahead\s+and|going\s+to|about\s+to|able\s+to|(?:happy|glad|pleased)\s+to"
    r"|(?:like|love|want|wish|decided|need|proceed|proceeded)\s+to|to"
    r"|(?:asked|told|instructed|authori[sz]ed|arranged\s+for|requested)(?:\s+[\w-]+){0,3}\s+to)){0,6}"
)
_GAP = rf"{_ADVERBS}(?:(?:\s+[\w-]+){{1,4}}\s+(?:and|or)(?:\s+then)?{_ADVERBS})?"
_FIRST = (
    r"\b(?:we|i|let\s+us|let\s+me|allow\s+me\s+to|our\s+(?:[\w-]+\s+){0,2}(?:team|staff|colleagues|system|department))"
)
#: We (or our team) act: "we will refund", "I've issued", "let me credit", "we refunded", "we're sending".
FIRST_ACT = re.compile(
    rf"{_FIRST}(?P<aux>\s+(?:will|shall|would|should|can|could|may|might|must|am|are|is|have|has|had|do|did|was"
    rf"|were))?(?P<gap>{_GAP})\s+(?P<verb>{_VERB})\b"
)
#: Something happened or will happen, whoever acts: "has been processed", "was refunded", "will be sent".
EVENT = re.compile(rf"\b(?:will|shall|has|have|had|was|were|did|got|going\s+to|about\s+to){_GAP}\s+(?P<verb>{_VERB})\b")
#: Something is so now: "is refunded", "are being processed" — a claim when its subject is specific.
PRESENT = re.compile(rf"\b(?:is|are|am|get|gets|do|does){_GAP}\s+(?P<verb>{_VERB})\b")
#: A clause that starts with what was or is being done, no one named: "Refunding 45.00 EUR now", "Issued a refund".
LEADING = re.compile(rf"(?:^|[,;:()\u2013\u2014]|\s-)\s*(?:(?:just|now|already|also)\s+)?(?P<verb>{_VERB})\b")
#: A verb of moving money on its own: "Order SB-20001 refunded", "Refunded: 45.00 EUR".
BARE_MOVED = re.compile(
    r"(?<![\w-])(?:refunded|reimbursed|credited|compensated|waived|cancell?ed|replaced|deposited)\b"
)
#: What a thing of value may be doing ("your refund is on its way", "45.00 EUR will reach your account").
_STATE = (
    r"on\s+(?:its|the|their)\s+way|under\s*way|in\s+progress|complete|done|ready|coming|en\s+route|in\s+motion"
    r"|through|sorted|settled|attached|enclosed|below|yours|heading|arriv\w*|reach\w*|appear\w*"
    r"|show\w*\s+up|land\w*|(?:going|coming|goes|go)\s+(?:back|to|out)|back\s+(?:to|on|in|into)\s+(?:you|your)"
    r"|in\s+your\s+(?:account|bank|inbox|wallet)|on\s+your\s+(?:card|account|statement)|set\s+up|active"
    r"|successful|happening|waiting|leav\w+|ships?"
)
#: Words that may stand between a thing of value and what it does ("your refund of 45.00 EUR for order SB-20001
#: has now been"), after at most one word of its own ("your replacement tent").
_TOPIC_GAP = (
    rf"(?:of|for|worth|totall?ing|to|on|the|full|order|amount|sum|{ORDER_IDS_IN_TEXT.pattern}|{_MONEY}|{ISO_CODES}|is|are"
    r"|was|were|has|have|had|been|be|being|will|shall|going|gone|went|got|gets?|getting|about|now|just|already|also"
    r"|\w+ly|then|today|tomorrow|soon|still|all|set)"
)
_AFTER_TOPIC = re.compile(
    rf"(?P<gap>(?:\s+[\w-]+)?(?:\s+{_TOPIC_GAP}){{0,10}}?)\s+(?:{_VERB}|{_VERB_S}|{_STATE})\b", re.IGNORECASE
)
#: What may not stand between a thing of value and what it does: negation, possibility, a condition, how long
#: things take ("a refund takes 3 to 5 business days to appear").
_GAP_BREAK = re.compile(
    r"\b(?:not|never|no|nothing|without|can|could|may|might|should|would|must|need|needs|if|whether|unless|take"
    r"|takes)\b"
)
#: What makes "a refund ..." a rule rather than this customer's refund: "a refund usually appears within ...".
_HABITUAL = re.compile(r"\b(?:usually|typically|normally|generally|often|always|sometimes)\b")
#: The customer gets something: "you will receive", "you'll see the refund", "your account now shows a credit".
RECEIPT = re.compile(
    r"\b(?:you|your\s+(?:account|card|balance|statement|wallet|bank\s+account))(?:\s+(?:will|shall|are\s+going\s+to"
    r"|have|has|had|should|can\s+expect\s+to|now|just|already|soon|also|be|been|are|were|would))*"
    r"\s+(?P<verb>receive[ds]?|receiving|get|got|gotten|getting|see|seen|seeing|have|had|expect|keep|shows?"
    r"|has|holds?|contains?|reflects?|includes?)\b"
)
#: The landed promise of receipt: "you will receive", "you'll get" (no thing of value needed).
_RECEIPT_PROMISED = re.compile(r"\byou\s+(?:will|shall|are\s+going\s+to)\s+(?:receive|get)\b")
#: Handing something over: "here is", "please find attached".
PRESENTING = re.compile(
    r"\b(?:here\s+(?:is|are)|please\s+find|find\s+(?:attached|enclosed|below)|(?:attached|enclosed|below)\s+(?:is|are))\b"
)
#: A headline: "Refund approved", "Refund of 45.00 EUR issued", "Refund: 45.00 EUR".
HEADLINE = re.compile(
    r"\b(?:refund|reimbursement|credit|compensation|voucher|coupon|gift\s*card|discount|replacement|cancellation"
    r"|(?:return\s+)?label)(?:\s+(?:of|for)(?:\s+[^\s,;:]+){1,6}?)?\s*:?\s+(?:approved|issued|processed|sent|confirmed"
    r"|granted|initiated|complete|completed|done|paid|credited|shipped|applied|added|arranged|created|generated"
    rf"|attached|executed|authori[sz]ed|released|booked|successful|under\s*way|on\s+its\s+way)\b"
    rf"|\b(?:refund|reimbursement|credit|compensation|voucher|discount)s?\s*:\s*{_MONEY}"
)
#: The landed confirmations: "is confirmed", "has been approved".
CONFIRMED = re.compile(r"\b(?:is|are|was|were|has\s+been|have\s+been|will\s+be)\s+(?:confirmed|approved|granted)\b")
#: A clause that is only a condition or a time ("once your return arrives", "when the refund has been issued"):
#: up to a comma, or to where "we/you will ..." starts the main clause.
_HYPOTHETICAL = re.compile(
    r"\b(?:if|when|whenever|once|after|before|until|till|unless|as\s+soon\s+as|in\s+case|whether|provided\s+that)\b"
    r"(?:(?!\b(?:we|i|you|our\s+team)\s+(?:will|shall|would|can|could|may|might|are\s+going\s+to)\b)[^,;:\n])*,?"
)
#: Past events inside such a clause are claims all the same ("as soon as we issued your refund, ...").
_PAST_EVENT = re.compile(r"\b(?:was|were|did|had)\b|\b(?:we|i)\s+(?:\w+\s+)?\w+ed\b|\b(?:we|i)\s+(?:have|has)\b")
_NEGATION = re.compile(r"\b(?:not|never|no|nothing|none|nobody|neither)\b")
_SUBJECT_SPECIFIC = re.compile(
    rf"{ORDER_IDS_IN_TEXT.pattern}|{_MONEY}|\b(?:your|this|my|it|you)\b"
    rf"|\b(?:the|a|an)\s+(?:[\w-]+\s+){{0,2}}(?:{_VALUE}|order|item|items|parcel|package|purchase)\b",
    re.IGNORECASE,
)
_SENTENCE_SPECIFIC = re.compile(rf"{ORDER_IDS_IN_TEXT.pattern}|{_MONEY}|\b(?:your|this|my)\b", re.IGNORECASE)
_PAST_FORM = re.compile(r"(?:ed|sent|gave|given|paid|put|took|taken|care\s+of)$")
_DONE_FORM = re.compile(rf"(?:ing$|{_PAST_FORM.pattern})")


def claim_text(sentence: str) -> str:
    """A sentence as claims are read: lower case, curly quotes straight, contractions spelled out."""
    text = sentence.lower()
    for pattern, replacement in _CONTRACTIONS:
        text = re.sub(pattern, replacement, text)
    return text


def asserted(text: str) -> str:
    """A sentence (from `claim_text`) without its conditions and times: what it says is so."""
    return _HYPOTHETICAL.sub(lambda match: match.group(0) if _PAST_EVENT.search(match.group(0)) else " ", text)


def topics(text: str) -> list[re.Match[str]]:
    """The things of value a text names, except those only asked for, ruled on or decided about."""
    return [
        match
        for match in TOPIC.finditer(text)
        if not _TOPIC_NOT_AFTER.search(text[max(0, match.start() - 60) : match.start()])
        and not _TOPIC_NOT_BEFORE.match(text[match.end() :])
    ]


def _specific(topic: re.Match[str], text: str) -> bool:
    """Whether a thing of value is this customer's: an amount, or with a determiner ("your refund")."""
    return topic.group(0)[0].isdigit() or topic.group(0)[0] in "€$£" or bool(_DETERMINER.search(text[: topic.start()]))


def _negated_before(text: str, start: int) -> bool:
    """Whether one of the three words before `start` (in its clause) negates what follows ("no refund has")."""
    clause = re.split(r"[,;:()\u2013\u2014]", text[:start])[-1]
    return bool(_NEGATION.search(" ".join(clause.split()[-3:])))


def _pays_us(match: re.Match[str], text: str) -> bool:
    """Whether a 'pay' is the customer's payment ("paid by card", "you will pay"), not ours."""
    if not match.group("verb").startswith("pa") or "back" in match.group("verb"):
        return False
    return bool(re.match(r"\s+(?:by|with|via|using|through|at|for\s+(?:your|the)\s+order)\b", text[match.end() :])) or (
        bool(re.search(r"\byou\s*$", text[: match.start()]))
    )


def _first_person_claims(text: str, *, valued: bool) -> bool:
    for match in FIRST_ACT.finditer(text):
        verb = match.group("verb")
        if _pays_us(match, text):
            continue
        acted = bool(match.group("aux") or match.group("gap").strip()) or bool(_PAST_FORM.search(verb))
        if re.fullmatch(_MOVING, verb) or (acted and re.fullmatch(_DOING, verb)):
            return True
        if valued and (acted or _SENTENCE_SPECIFIC.search(text)):
            return True
    return False


def _event_claims(text: str, *, valued: bool) -> bool:
    for pattern in (EVENT, PRESENT):
        for match in pattern.finditer(text):
            if _negated_before(text, match.start()) or _pays_us(match, text):
                continue
            if pattern is PRESENT:
                subject = re.split(r"[,;:()]", text[: match.start()])[-1]
                if not _SUBJECT_SPECIFIC.search(subject):
                    continue  # a rule: "refunds are issued to the original payment method"
            if valued or re.fullmatch(_MOVING, match.group("verb")):
                return True
    return False


def _topic_claims(text: str, found: list[re.Match[str]]) -> bool:
    for topic in found:
        if not _specific(topic, text) or _negated_before(text, topic.start()):
            continue
        after = _AFTER_TOPIC.match(text, topic.end())
        if after is None or _GAP_BREAK.search(after.group("gap")):
            continue
        if not (_HABITUAL.search(after.group("gap")) and re.search(r"\ban?\s+$", text[: topic.start()])):
            return True
    for receipt in RECEIPT.finditer(text):
        if any(topic.start() > receipt.end() and _specific(topic, text) for topic in found):
            return True
    return any(
        match.end() <= topic.start() and (_specific(topic, text) or not topic.group(0).startswith("refund"))
        for match in PRESENTING.finditer(text)
        for topic in found
    )


def _leading_claims(text: str, *, valued: bool) -> bool:
    """Whether a clause starts with money moved or moving, or something of value done ("Issued a refund")."""
    return any(
        (valued or re.fullmatch(_MOVING, match.group("verb"))) and _DONE_FORM.search(match.group("verb"))
        for match in LEADING.finditer(text)
    )


def _text_claims(text: str) -> bool:
    """Whether one line of a sentence (from `claim_text`, its conditions removed) claims an action."""
    found = topics(text)
    moved = any(not _negated_before(text, match.start()) for match in BARE_MOVED.finditer(text))
    return bool(
        _first_person_claims(text, valued=bool(found))
        or _event_claims(text, valued=bool(found))
        or _topic_claims(text, found)
        or (moved and _SENTENCE_SPECIFIC.search(text))
        or _leading_claims(text, valued=bool(found))
        or _RECEIPT_PROMISED.search(text)
        or HEADLINE.search(text)
        or CONFIRMED.search(text)
    )


def claims_action(sentence: str) -> bool:
    """Whether a sentence says that money moves or an action of ours happens, happened or will happen (see the
    module's docstring). Each line is read as written and without its asides ("your refund (45.00 EUR) is on its
    way"), what it only supposes left out."""
    lines = claim_text(sentence).splitlines()
    variants = dict.fromkeys(asserted(text) for line in lines for text in (line, re.sub(r"\([^()]*\)", " ", line)))
    return any(_text_claims(text) for text in variants)
