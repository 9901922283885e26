"""The default generator: answers composed from the agents' replies and the KB, no LLM.

Every sentence of a draft is an agent's sentence or one of the entry's; nothing is made up.
Per gap:

1. Which replies. The customers' language is detected from their questions; the agents'
   replies in that language (up to the 8 most representative among the first 40) are the
   evidence. When no reply is in it, the others are used and a warning says so ("agents
   answered in English; customers asked in French") — offline there is no translating.
   Draft.language is the language of the draft (its base reply's, else the customers').
2. Cleaning each reply, sentence by sentence. Dropped: lines that read like instructions to a
   bot; greetings ("Hi Sam,", "Hey there!"), self-introductions ("Marco here.", "This is Priya
   from support"), pleasantries and sign-offs ("Thanks for your patience!", "Have a great
   day!", "Cheers, Anna"); and sentences about one customer only: order, tracking and account
   references ("#48213", "order 1234567", "VC-2184123"), a date or an amount tied to their
   order or account ("your order from March 3rd", "your refund of $45.20"), what the agent did
   on their case ("I've added gift wrap for you"), the agent asking them something or
   promising to look ("Could you send me your order number?", "send me the code and I'll take
   a look"), a link a customer sent, and anything quoting a customer (6 words in a row). The
   customer's name is cut from a sentence that addresses them ("Sure, Maria, ...") and a
   sentence that still names them is dropped. A sentence with an e-mail address or phone
   number (safety.redact_pii) is dropped too, unless the bot's answers already give that
   address or number (the company's own, not personal data).
3. Composing. Two sentences state the same fact when their embeddings are close (cosine ≥
   0.75, or word overlap ≥ 0.6 without an embedder) and they do not disagree on a number. A
   fact's support is how many of the replies state it. new_answer: the most representative
   reply that has anything left is the base, whole; a fact stated by at least 2 replies
   (by the one reply there is, if only one agent replied) that the base lacks is added after
   it, best supported first. improve_answer: the entry's answer, unchanged, plus the agents'
   supported facts it lacks. add_variants: the entry's answer, verbatim. A supported fact that
   disagrees with the base or the entry on a number is not added: a warning quotes both.
4. Rejections. No sentence of a draft the reviewers rejected as wrong_information is used
   again (the same-fact test): the next reply becomes the base. When nothing is left, the
   draft is the placeholder asking the reviewer to write the answer.
5. Tone (core.generation.tone): trimmed to the bot's typical length by dropping the least
   supported added or base sentences — never the core one (the base's best-supported; for
   improve_answer the best-supported added fact), the entry's, or one every reply states;
   contractions, "!" and emoji matched to the bot's answers (agents' sentences only: the
   entry's stay as published); the bot's greeting added only if its answers open with one.
6. Safety: links the bot's answers and the agents' replies do not contain are removed and
   listed in the warnings (safety.strip_unknown_links).

No agent reply and no entry answer → the NO_EVIDENCE_ANSWER placeholder. When every reply
is the same clean text, the draft is that text, unchanged.

Speed: one embedding call per `draft_all` for all gaps' sentences (the production embedder
caches by text, so a cycle re-embeds only new sentences), nothing at all when the replies
agree word for word; the rest is regular expressions and a small similarity matrix per gap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from core.embeddings import CachedEmbedder, Embedder
from core.generation import Draft, GapContext
from core.generation.language import detect_language, language_name, warm_up
from core.generation.safety import (
    looks_like_instructions,
    redact_pii,
    strip_unknown_links,
    urls,
)
from core.generation.tone import (
    Tone,
    apply_style,
    is_greeting,
    join_sentences,
    learn_tone,
    split_sentences,
    strip_emoji,
    word_count,
)
from core.pipeline.proposals import NO_EVIDENCE_ANSWER, REFUSED_EVIDENCE_ANSWER

__all__ = ["OfflineGenerator", "clean_reply"]

log = logging.getLogger(__name__)

MAX_REPLIES = 8
# How far down the replies to look for ones in the customers' language.
SCANNED_REPLIES = 40
MIN_SUPPORT = 2
SAME_FACT = 0.75
SAME_FACT_LEXICAL = 0.6
# Two sentences about the same thing (an answer and agents who talk about something else
# share none).
RELATED = 0.5
RELATED_LEXICAL = 0.3
QUOTE_WORDS = 6
MAX_QUESTIONS = 50

# -- cleaning an agent's reply ---------------------------------------------------------------

_NOT_NAMES = (
    "Yes|No|Sure|Thanks|Thank|Sorry|Good|Great|We|I|You|It|Its|Our|The|There|Again|All|"
    "Everyone|Team|Support|Welcome|Absolutely|Of|Happy|Hope|So|Ok|Okay|Please|And|This|That|"
    "Your|Unfortunately|Right|Just|Glad|Here|Quick|Short|Nice|Certainly|Definitely|Totally"
)
_NAME = rf"(?!(?:{_NOT_NAMES})\b)[A-Z][a-zà-ÿ'’-]+"
_END = r"\s*(?:[,!.:;]+|\s[-–—]+|$)\s*"
_GREETING = re.compile(
    r"(?i:hi|hello|hey|hiya|howdy|greetings|dear|good\s+(?:morning|afternoon|evening)|"
    r"bonjour|salut|hola|buenos\s+d[ií]as|hallo|guten\s+tag|ciao|buongiorno|ol[áa])"
    r"(?:\s+(?i:there|again|all|everyone|friend|folks|team|(?:valued\s+)?customer|sir|madam))?"
    rf"(?:\s+(?P<name>{_NAME}))?"
    r"(?:\s*(?:[,!.:;]+|\s[-–—]+)\s*|\s+(?=\S)|\s*$)"
)
_INTRO = re.compile(
    r"(?:(?i:this\s+is|it['’]s|it\s+is|i['’]m|i\s+am|my\s+name\s+is|(?:you['’]re|you\s+are)\s+"
    r"(?:chatting|speaking|talking)\s+(?:with|to))"
    rf"\s+(?P<n1>{_NAME})(?:\s+(?i:from|with|at|of|on)\s+[^,.!?]{{1,40}}?)?(?:\s+(?i:here))?"
    rf"|(?P<n2>{_NAME})\s+(?:(?i:from|with|at|of|on)\s+[^,.!?]{{1,40}}?\s+)?(?i:here))"
    + _END
)
_PLEASANTRIES = re.compile("|".join([
    r"(?:thanks|thank you)(?: so much| very much| a lot)?(?: for (?:waiting|your patience|the "
    r"wait|reaching out|contacting us|getting in touch|your message|your question|asking|"
    r"bearing with (?:me|us)|holding|being patient|your understanding|choosing \w+))?",
    r"(?:and )?(?:so |really |very )?sorry (?:for|about) the (?:long )?(?:wait|delay)",
    r"(?:that's |that is |what )?an? (?:good|great|excellent|fair) question",
    r"(?:good|great) (?:question|timing)",
    r"(?:i )?hope (?:this|that) helps",
    r"(?:i'm |i am |we're |we are |always )?(?:happy|glad) to help(?: with anything else)?",
    r"glad (?:i|we) could help",
    r"(?:is there )?anything else (?:i|we) can (?:help|do|assist)(?: you)?(?: with| for you)?"
    r"(?: today)?",
    r"anything else(?:,? just (?:shout|ask|let (?:me|us) know))?",
    r"(?:just |please )?(?:let (?:me|us) know|feel free to ask|shout|ask) if (?:there's|there "
    r"is|you have|you need) anything else(?: (?:i|we) can help (?:you )?with)?",
    r"(?:please )?(?:don't|do not) hesitate to (?:reach out|contact us|ask|get in touch)(?: if "
    r"you have any (?:other |more |further )?questions)?",
    r"feel free to (?:reach out|contact us|ask|get in touch)(?: if you have any "
    r"(?:other |more |further )?questions)?",
    r"have an? (?:great|good|nice|lovely|wonderful|fantastic|awesome) (?:day|evening|"
    r"weekend|one|afternoon|morning|week)(?: ahead)?",
    r"enjoy (?:your|the) (?:day|weekend|evening)",
    r"take care|talk soon|(?:all the )?best|no problem(?: at all)?|no worries|my pleasure|"
    r"you're welcome|you are welcome|sure thing",
]))
_SIGNOFF = re.compile(
    rf"[-–—~]+\s*(?P<n1>{_NAME})"
    r"|(?i:cheers|thanks|thank you|best|best regards|kind regards|regards|warm regards|warmly|"
    r"all the best|take care|talk soon|sincerely)"
    rf"[,!.]?\s*(?:[-–—]\s*)?(?P<n2>{_NAME})?"
)
_ORDER_REF = re.compile(
    r"#\s?\d{3,}"
    r"|\b(?i:order|tracking|ticket|case|reference|ref|parcel|package|shipment|invoice|"
    r"confirmation|rma)(?i:\s+(?:number|no\.?|id|code|#))?\s*[:#]?\s*"
    r"(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,}\b"
    r"|\b[A-Z]{2,4}-\d{4,}\b"
    r"|\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{10,}\b"
    r"|\b\d{8,}\b"
)
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DATE = re.compile(
    rf"\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?"
    rf"{_MONTH}\b|\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b"
    r"|\b(?i:yesterday|earlier today|this morning|last night|the other day)\b"
)
_YOUR = re.compile(r"\byour?\b", re.IGNORECASE)
_ACCOUNT_AMOUNT = re.compile(
    r"\byour\s+(?:\w+\s+)?(?:refund|balance|credit|payment|charge|total|bill|invoice|deposit|"
    r"statement|subtotal)\s+(?:of|is|was|for|has been|will be|comes to|came to|amounts? to)\b"
    r"[^.!?]{0,30}?[$€£]\s?\d"
    r"|\b(?:refund(?:ed)?|credit(?:ed)?|charg(?:ed|e)|debit(?:ed)?)\s+(?:you|your \w+)\s+"
    r"(?:with\s+)?[$€£]\s?\d"
    r"|[$€£]\s?\d[\d.,]*\s+(?:has|have|was|were|will be)\s+(?:been\s+)?(?:refunded|credited|"
    r"charged|debited|sent|returned|deposited|added|applied)",
    re.IGNORECASE,
)
_DONE_FOR_THEM = re.compile(
    r"\b(?:I(?:['’]ve|\s+have|\s+just|\s+already)?|we(?:['’]ve|\s+have|\s+just|\s+already))\s+"
    r"(?:just\s+|already\s+|gone\s+ahead\s+and\s+|now\s+)?(?:added|cancell?ed|refunded|updated|"
    r"changed|sent|resent|re-sent|issued|processed|applied|escalated|forwarded|credited|reset|"
    r"created|opened|filed|raised|waived|upgraded|removed|fixed|arranged|booked|emailed|"
    r"passed|noted|placed|submitted|requested|reissued|reshipped|extended|unlocked|"
    r"reactivated|verified|confirmed|checked|looked)\b"
    r"|\bI\s+was\s+able\s+to\b",
)
_AGENT_PERSONAL = re.compile(
    r"\b(?:send|give|tell|show|forward|dm|message|email)\s+me\b"
    r"|\breply\s+(?:here\s+)?with\b|\bjust\s+reply\b"
    r"|\bI(?:['’]ll|\s+will|\s+can|\s+could)\s+(?:take\s+a\s+look|check|look\s+into|have\s+a\s+"
    r"look|update|sort|get\s+(?:that|this|it)|help\s+you\s+with|see\s+what|find\s+out)"
    r"|\bI(?:['’]ll|\s+will|\s+can|\s+could)\s+(?:point|send|recommend|refer|connect|transfer|"
    r"escalate|arrange|book|set\s+up|pass)\b"
    r"|\bI(?:['’]m|\s+am)\s+(?:happy|glad)\s+to\b|\blet\s+me\s+(?:check|see|look|find)\b"
    r"|\blet\s+(?:me|us)\s+know\s+(?:what|which|how|when|where|if\s+you(?:['’]d)?\s+"
    r"(?:like|want|prefer))\b",
    re.IGNORECASE,
)
_ASKS_THEM = re.compile(
    r"^(?:(?:and|so|also|or|but),?\s+)?(?:could|can|would|will|do|did|have|has|are|is|was|were|"
    r"what|which|when|where|how|may|shall|should)\b.*\byou(?:r|['’]d|['’]re|['’]ve)?\b",
    re.IGNORECASE,
)
# A bare yes or no says nothing another reply's answer lacks: never added as a fact.
_SHORT_ANSWER = re.compile(
    r"(?:yes|yep|yeah|no|nope|sure|absolutely|certainly|definitely|of course|correct|indeed|"
    r"(?:we|it|they|you) (?:sure |certainly |absolutely )?(?:do|does|can|will|are|is)(?: not)?|"
    r"(?:sadly|unfortunately) not|short answer)\b[^.!?]{0,15}"
)
MIN_FACT_WORDS = 4
# Sympathy opens an answer; it is no fact to append to another one.
_EMPATHY = re.compile(
    r"(?:(?:i'm|i am|we're|we are)\s+)?(?:so\s+|really\s+|very\s+|truly\s+)?sorry\b"
    r"|that(?:'s| is)\s+(?:so\s+|really\s+)?(?:frustrating|annoying|not good|not great|a shame)"
    r"|(?:oh\s+)?no[,!]"
)


def _substantive(sentence: str) -> bool:
    """More than a bare yes or no: a reply (or what rejections left of it) needs one."""
    return not _SHORT_ANSWER.fullmatch(_bare(sentence))


# A candidate whose content words are this much in the draft already adds nothing.
COVERED = 0.8
# An introduction that runs on ("My name is Anna and I'll be helping you today.").
_SELF_INTRO = re.compile(
    r"(?i:my\s+name\s+is|(?:you['’]re|you\s+are)\s+(?:chatting|speaking|talking)\s+(?:with|to))\b"
    rf"|(?i:this\s+is|i['’]m|i\s+am)\s+{_NAME}\s+(?i:from|with|at|and|here)\b"
)
_WORDS = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_CONTACTS = re.compile(
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"|\+?\(?\d[\d ().-]{5,}\d"
)


def _plain(sentence: str) -> str:
    """The sentence as matched: no emoji, straight apostrophes, single spaces."""
    return " ".join(strip_emoji(sentence).replace("’", "'").split())


def _bare(sentence: str) -> str:
    return re.sub(r"[\s.!?…,;:]+$", "", _plain(sentence)).lower()


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].islower() else text


@dataclass(frozen=True)
class Cleaned:
    """An agent reply reduced to its general sentences, with their original separators."""

    sentences: tuple[tuple[str, str], ...]
    # Sentences left out because they held an e-mail address or phone number.
    personal: int = 0
    instructions: int = 0


@dataclass(frozen=True)
class _Customers:
    """What the customers wrote, so it is never copied into an answer."""

    links: frozenset[str] = frozenset()
    quotes: frozenset[tuple[str, ...]] = frozenset()


def _customers(questions: Sequence[str], allowed_links: set[str]) -> _Customers:
    links, quotes = set(), set()
    for q in questions[:MAX_QUESTIONS]:
        links.update(u for u in urls(q) if u.lower() not in allowed_links)
        words = [w.lower() for w in _WORDS.findall(q)]
        quotes.update(tuple(words[i:i + QUOTE_WORDS])
                      for i in range(len(words) - QUOTE_WORDS + 1))
    return _Customers(frozenset(links), frozenset(quotes))


def _strip_opening(sentence: str, names: set[str]) -> str:
    """A first sentence without its greeting, self-introduction and pleasantry clauses."""
    text = _plain(sentence)
    stripped = False
    while text:
        m = _GREETING.match(text) or _INTRO.match(text)
        if not m or not m.group().strip():
            break
        names.update(n for n in m.groupdict().values() if n)
        text, stripped = text[m.end():], True
    if not stripped:
        return sentence
    # "Sam here, thanks for waiting! ..." leaves "thanks for waiting!" as a clause.
    clause = re.match(r"([^,.!?]+)[,.!?]+\s*", text)
    while clause and _PLEASANTRIES.fullmatch(_bare(clause.group(1))):
        text = text[clause.end():]
        clause = re.match(r"([^,.!?]+)[,.!?]+\s*", text)
    if _PLEASANTRIES.fullmatch(_bare(text)):
        return ""
    return _capitalise(text.strip())


def _about_one_customer(plain: str) -> bool:
    if _SELF_INTRO.match(plain):
        return True
    if _ORDER_REF.search(plain) or _ACCOUNT_AMOUNT.search(plain):
        return True
    if _DATE.search(plain) and _YOUR.search(plain):
        return True
    if _DONE_FOR_THEM.search(plain) or _AGENT_PERSONAL.search(plain):
        return True
    return plain.endswith("?") and bool(_ASKS_THEM.search(plain))


def _from_customer(plain: str, customers: _Customers) -> bool:
    """The sentence repeats a customer: their link, or 6 of their words in a row."""
    if any(link in plain for link in customers.links):
        return True
    if customers.quotes:
        words = [w.lower() for w in _WORDS.findall(plain)]
        return any(tuple(words[i:i + QUOTE_WORDS]) in customers.quotes
                   for i in range(len(words) - QUOTE_WORDS + 1))
    return False


# "Sure, Maria, ..." / "Thanks, Tom!": a name after an interjection addresses the customer.
_VOCATIVE = re.compile(
    r"^(?i:sure|yes|no|hi|hey|hello|thanks|thank you|of course|absolutely|ok|okay|great|"
    r"good news|sorry|so|well|unfortunately|happy to help|certainly|right)"
    rf"\s*,\s*(?P<name>{_NAME})\s*(?=[,!.?])"
)


def _without_vocative(sentence: str, names: set[str]) -> str:
    m = _VOCATIVE.match(sentence)
    if m:
        names.add(m.group("name"))
    for name in names:
        sentence = re.sub(rf",\s*{re.escape(name)}(?=\s*[,.!?;:]|\s*$)", "", sentence)
        sentence = re.sub(rf"^{re.escape(name)},\s*", "", sentence)
    return _capitalise(sentence)


def _has_personal_data(sentence: str, public: Sequence[str]) -> bool:
    text = sentence
    for contact in public:
        text = text.replace(contact, " ")
    return redact_pii(text) != text


def clean_reply(text: str, *, questions: Sequence[str] = (),
                public_contacts: Sequence[str] = (),
                allowed_links: set[str] | None = None) -> Cleaned:
    """An agent's reply without greetings, names, sign-offs, personal data and sentences that
    are about the one customer it answered (see the module docstring). `public_contacts` are
    the e-mail addresses and phone numbers the bot's answers already give; `allowed_links`
    the links they contain (a customer's link that is one of these may be repeated)."""
    return _clean(text, tuple(public_contacts), _customers(questions, allowed_links or set()))


def _clean(text: str, public: tuple[str, ...], customers: _Customers) -> Cleaned:
    general = _clean_general(text or "", public)
    if not customers.links and not customers.quotes:
        return general
    kept = tuple(p for p in general.sentences if not _from_customer(_plain(p[0]), customers))
    return replace(general, sentences=kept)


@lru_cache(maxsize=8192)
def _clean_general(text: str, public: tuple[str, ...]) -> Cleaned:
    # Cached: the same replies come back every cycle while their gap stays open.
    lines = text.split("\n")
    kept_lines = [line for line in lines if not looks_like_instructions(line)]
    instructions = len(lines) - len(kept_lines)
    parts = split_sentences("\n".join(kept_lines))
    names: set[str] = set()
    out: list[tuple[str, str]] = []
    personal = 0
    for i, (sentence, sep) in enumerate(parts):
        if not out and i < 3:
            sentence = _strip_opening(sentence, names)
            if not sentence:
                continue
        bare = _bare(sentence)
        if not bare or _PLEASANTRIES.fullmatch(bare):
            continue
        plain = _plain(sentence)
        closing = i >= len(parts) - 2
        if closing and _SIGNOFF.fullmatch(plain.rstrip(".!")):
            continue
        if i == len(parts) - 1 and re.fullmatch(rf"{_NAME}(?:\s+{_NAME})?", plain):
            continue  # a bare name signing the message
        if _about_one_customer(plain):
            continue
        sentence = _without_vocative(sentence, names)
        if any(re.search(rf"\b{re.escape(n)}\b", sentence) for n in names):
            continue
        if _has_personal_data(sentence, public):
            personal += 1
            continue
        out.append((sentence, sep))
    return Cleaned(tuple(out), personal, instructions)


# -- comparing sentences ---------------------------------------------------------------------

_STOPWORDS = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been being it "
    "its this that these those there here we you your our us i me my they them their he she "
    "his her so if then than just also can will would should could may might do does did "
    "have has had all any some very really too get got".split()
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _tokens(text: str) -> frozenset[str]:
    out = set()
    for word in _WORDS.findall(text.lower().replace("’", "'")):
        if word in _STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.add(word)
    return frozenset(out)


def _numbers(text: str) -> frozenset[str]:
    return frozenset(n.replace(",", "") for n in _NUMBER.findall(text))


class _Similarity:
    """Same-fact tests among one gap's sentences (by embedding, or by word overlap), computed
    once as matrices: a gap has a few dozen sentences, and support counting asks often."""

    def __init__(self, texts: list[str], vectors: dict[str, np.ndarray] | None) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        n = len(texts)
        keys = [_bare(t) for t in texts]
        close = np.array([[a == b for b in keys] for a in keys], dtype=bool).reshape(n, n)
        tokens = [_tokens(t) for t in texts]
        vocab = {w: k for k, w in enumerate(sorted(set().union(*tokens)))} if n else {}
        if vocab:
            bag = np.zeros((n, len(vocab)), dtype=np.float32)
            for i, ts in enumerate(tokens):
                bag[i, [vocab[w] for w in ts]] = 1.0
            sizes = bag.sum(axis=1)
            dice = 2 * (bag @ bag.T) / np.maximum(sizes[:, None] + sizes[None, :], 1.0)
            close |= dice >= SAME_FACT_LEXICAL
        related = close.copy()
        if vocab:
            related |= dice >= RELATED_LEXICAL
        if vectors is not None and n and all(t in vectors for t in texts):
            mat = np.stack([vectors[t] for t in texts])
            cosine = mat @ mat.T
            close |= cosine >= SAME_FACT
            related |= cosine >= RELATED
        self.related_matrix = related
        numbers = [_numbers(t) for t in texts]
        agree = np.array([[not a or not b or a <= b or b <= a for b in numbers]
                          for a in numbers], dtype=bool).reshape(n, n)
        self.close_matrix = close
        self.agree_matrix = agree
        self.same_matrix = close & agree

    def close(self, a: str, b: str) -> bool:
        """Same topic: the sentences say the same thing, numbers aside."""
        return bool(self.close_matrix[self.index[a], self.index[b]])

    def related(self, a: str, b: str) -> bool:
        """About the same thing, if not saying the same about it."""
        return bool(self.related_matrix[self.index[a], self.index[b]])

    def agree(self, a: str, b: str) -> bool:
        """No number in one that the other contradicts."""
        return bool(self.agree_matrix[self.index[a], self.index[b]])

    def same(self, a: str, b: str) -> bool:
        return bool(self.same_matrix[self.index[a], self.index[b]])

    def support(self, groups: list[list[str]]) -> dict[str, int]:
        """For each sentence, how many groups (replies) state the same fact."""
        if not self.index:
            return {}
        masks = np.zeros((len(groups), len(self.index)), dtype=bool)
        for g, group in enumerate(groups):
            masks[g, [self.index[t] for t in group]] = True
        hits = (self.same_matrix.astype(np.int32) @ masks.T.astype(np.int32)) > 0
        counts = hits.sum(axis=1)
        return {t: int(counts[i]) for t, i in self.index.items()}


# -- the generator ---------------------------------------------------------------------------


@dataclass
class _Reply:
    order: int
    text: str
    language: str | None
    sentences: list[tuple[str, str]]


@dataclass
class _Gap:
    """One context, read and cleaned, waiting for sentence vectors."""

    ctx: GapContext
    language: str | None = None
    replies: list[_Reply] = field(default_factory=list)
    entry: list[tuple[str, str]] = field(default_factory=list)
    banned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    done: Draft | None = None

    def texts(self) -> list[str]:
        seen = dict.fromkeys(s for r in self.replies for s, _ in r.sentences)
        seen.update(dict.fromkeys(s for s, _ in self.entry))
        seen.update(dict.fromkeys(self.banned))
        return list(seen)

    def needs_vectors(self) -> bool:
        distinct = {tuple(s for s, _ in r.sentences) for r in self.replies}
        return self.done is None and (len(distinct) > 1 or bool(self.banned)
                                      or (bool(self.entry) and bool(self.replies)))


class OfflineGenerator:
    """Drafts answers from the agents' replies and the KB (see the module docstring).

    `embedder` compares sentences (wrapped in a CachedEmbedder unless it is one); without it,
    sentences are compared by their words."""

    name = "offline"

    def __init__(self, embedder: Embedder | None = None, *,
                 max_replies: int = MAX_REPLIES) -> None:
        if embedder is not None and not isinstance(embedder, CachedEmbedder):
            embedder = CachedEmbedder(embedder, max_items=20_000)
        self.embedder = embedder
        self.max_replies = max_replies
        warm_up()

    def draft_all(self, contexts: list[GapContext]) -> list[Draft]:
        gaps = []
        for ctx in contexts:
            try:
                gaps.append(self._read(ctx))
            except Exception as exc:
                log.exception("offline generator: reading gap %s failed", ctx.gap_id)
                gaps.append(_Gap(ctx, done=_failed(exc)))
        vectors, warning = self._vectors([g for g in gaps if g.needs_vectors()])
        drafts = []
        for gap in gaps:
            if gap.done is not None:
                drafts.append(gap.done)
                continue
            try:
                draft = self._compose(gap, vectors)
            except Exception as exc:
                log.exception("offline generator: drafting gap %s failed", gap.ctx.gap_id)
                draft = _failed(exc)
            if warning and gap.needs_vectors():
                draft = replace(draft, warnings=[*draft.warnings, warning])
            drafts.append(draft)
        return drafts

    # -- reading --------------------------------------------------------------------------

    def _read(self, ctx: GapContext) -> _Gap:
        gap = _Gap(ctx, language=detect_language(ctx.questions))
        if ctx.kind == "add_variants" and ctx.entry_answer:
            gap.done = Draft(ctx.entry_answer, language=detect_language([ctx.entry_answer])
                             or gap.language, generator=self.name)
            return gap
        known = [*ctx.kb_answers, *([ctx.entry_answer] if ctx.entry_answer else [])]
        public = sorted({c for text in known for c in _CONTACTS.findall(text)}, key=len,
                        reverse=True)
        # A customer's link stays out even when an agent repeats it; the KB's are the bot's own.
        allowed = {u.lower() for text in known for u in urls(text)}
        customers = _customers(ctx.questions, allowed)
        gap.replies = self._pool(gap, ctx.agent_replies, tuple(public), customers)
        if ctx.entry_answer and ctx.kind == "improve_answer":
            gap.entry = split_sentences(ctx.entry_answer)
        gap.banned = [s for rej in ctx.rejected if rej.reason == "wrong_information"
                      for s, _ in split_sentences(rej.answer)]
        return gap

    def _pool(self, gap: _Gap, texts: Sequence[str], public: tuple[str, ...],
              customers: _Customers) -> list[_Reply]:
        """The replies to compose from, cleaned: the most representative ones in the customers'
        language (or in any, with a warning, when none is). A popular gap has hundreds of
        replies; only the first few dozen are read."""
        wanted = gap.language
        same: list[_Reply] = []
        other: list[_Reply] = []
        personal = instructions = 0
        for order, text in enumerate(texts[: SCANNED_REPLIES]):
            if not text or not text.strip():
                continue
            c = _clean(text, public, customers)
            personal += c.personal
            instructions += c.instructions
            if not any(_substantive(s) for s, _ in c.sentences):
                continue  # nothing but "Sure!" left: no answer in it
            language = detect_language([" ".join(s for s, _ in c.sentences)])
            reply = _Reply(order, text, language, list(c.sentences))
            if wanted is None or language in (wanted, None):
                same.append(reply)
                if len(same) >= self.max_replies:
                    break
            elif len(other) < self.max_replies:
                other.append(reply)
        if personal:
            gap.warnings.append(f"Left out {personal} agent sentence(s) with an e-mail address "
                                "or phone number the bot's answers do not give.")
        if instructions:
            gap.warnings.append(f"Left out {instructions} agent reply line(s) that read like "
                                "instructions to a bot.")
        if not same and other:
            gap.warnings.append(f"agents answered in {language_name(other[0].language)}; "
                                f"customers asked in {language_name(wanted)}")
            return other
        return same

    def _vectors(self, gaps: list[_Gap]) -> tuple[dict[str, np.ndarray] | None, str | None]:
        if self.embedder is None or not gaps:
            return None, None
        texts = list(dict.fromkeys(t for g in gaps for t in g.texts()))
        if not texts:
            return {}, None
        try:
            matrix = self.embedder.embed(texts)
        except Exception as exc:
            log.exception("offline generator: embedding %d sentences failed", len(texts))
            return None, (f"Sentences were compared by their words only: the embedder failed "
                          f"({type(exc).__name__}).")
        return dict(zip(texts, matrix, strict=True)), None

    # -- composing ------------------------------------------------------------------------

    def _compose(self, gap: _Gap, vectors: dict[str, np.ndarray] | None) -> Draft:
        ctx = gap.ctx
        warnings = list(gap.warnings)
        replies = gap.replies
        if not replies and not gap.entry:
            text = REFUSED_EVIDENCE_ANSWER if ctx.rejected and ctx.agent_replies \
                else NO_EVIDENCE_ANSWER
            why = ("No agent reply to learn from" if not ctx.agent_replies else
                   "The agents' replies held only greetings and details about single customers")
            return self._placeholder(text, gap, [*warnings, f"{why}: write the answer."])
        sim = _Similarity(gap.texts(), vectors)
        def usable(sentence: str) -> bool:
            return not any(sim.same(sentence, b) for b in gap.banned)

        support = sim.support([[s for s, _ in r.sentences] for r in replies])
        everyone = len(replies) if len(replies) >= 2 else None
        needed = min(MIN_SUPPORT, len(replies))
        rejected_any = False

        # The base: the entry's answer (improve_answer) or the first reply with sentences left.
        base: list[tuple[str, str]]
        base_order = -1
        if gap.entry:
            base = list(gap.entry)
        else:
            base = []
            for r in replies:
                left = [(s, sep) for s, sep in r.sentences if usable(s)]
                rejected_any |= len(left) < len(r.sentences)
                if any(_substantive(s) for s, _ in left):
                    base, base_order = left, r.order
                    break
            if not base:
                return self._placeholder(REFUSED_EVIDENCE_ANSWER, gap, [
                    *warnings, "The reviewers rejected what the agents answered as wrong "
                    "information: write the answer."])
        from_entry = {s for s, _ in gap.entry}

        # Facts the base lacks, stated by enough replies.
        added: list[tuple[str, str]] = []
        candidates = sorted(
            ((s, r.order, k) for r in replies if r.order != base_order
             for k, (s, _) in enumerate(r.sentences)),
            key=lambda c: (-support[c[0]], c[1], c[2]))
        for s, _, _ in candidates:
            if support[s] < needed or word_count(s) < MIN_FACT_WORDS or not _substantive(s) \
                    or _EMPATHY.match(_bare(s)):
                continue
            if not usable(s):
                rejected_any = True
                continue
            present = [t for t, _ in [*base, *added]]
            if any(sim.same(s, t) for t in present):
                continue
            words = _tokens(s)
            if words and len(words & set().union(*(_tokens(t) for t in present))) \
                    >= COVERED * len(words):
                continue  # its words are all in the draft already, spread over sentences
            conflict = next((t for t in present if sim.close(s, t) and not sim.agree(s, t)),
                            None)
            if conflict is not None:
                warning = (f"{support[s]} agents said \"{s}\" where the draft says "
                           f"\"{conflict}\": check which is right.")
                if warning not in warnings:
                    warnings.append(warning)
                continue
            added.append((s, " "))
        if rejected_any:
            warnings.append("Left out what the reviewers rejected before as wrong information.")
        if gap.entry and added and not any(sim.related(s, t) for r in replies
                                           for s, _ in r.sentences for t in from_entry):
            warnings.append("The agents' replies have nothing in common with this answer: "
                            "check that they answer the same question before adding theirs "
                            "to it.")
        if gap.entry and not added:
            if rejected_any:
                return self._placeholder(REFUSED_EVIDENCE_ANSWER, gap, [
                    *warnings, "The reviewers rejected what the agents added as wrong "
                    "information: write the answer."])
            warnings.append("No agent reply to learn from: the answer is unchanged; write what "
                            "it is missing." if not replies else
                            "The agents' replies add nothing this answer lacks: check what "
                            "the customers were missing.")

        tone = learn_tone(ctx.kb_answers)
        core = None if gap.entry else max(
            base, key=lambda p: (support.get(p[0], 0), -base.index(p)))[0]
        # An improvement keeps at least its best-supported fact, however long the entry is.
        core = core if core else (added[0][0] if added else None)
        protected = from_entry | ({core} if core else set()) | {
            s for s, n in support.items() if everyone is not None and n >= everyone}
        parts = _trim([*base, *added], tone, protected, support)
        parts = [(s if s in from_entry else apply_style(s, tone), sep) for s, sep in parts]
        parts = [(s, sep) for s, sep in parts if _bare(s)]
        if tone.greeting and parts and not is_greeting(parts[0][0]):
            parts.insert(0, (tone.greeting, " "))
        answer = join_sentences(parts)
        allowed = [*ctx.kb_answers, *ctx.agent_replies,
                   *([ctx.entry_answer] if ctx.entry_answer else [])]
        answer, removed = strip_unknown_links(answer, allowed)
        if removed:
            warnings.append("Removed link(s) that neither the bot's answers nor the agents' "
                            "replies contain: " + ", ".join(removed))
        if not answer.strip():
            return self._placeholder(NO_EVIDENCE_ANSWER, gap, warnings)
        language = gap.language
        if replies and base_order >= 0:
            language = replies[[r.order for r in replies].index(base_order)].language or language
        elif gap.entry:
            language = detect_language([ctx.entry_answer or ""]) or language
        return Draft(answer, warnings=warnings, language=language, generator=self.name)

    def _placeholder(self, text: str, gap: _Gap, warnings: list[str]) -> Draft:
        return Draft(text, placeholder=True, warnings=warnings, language=gap.language,
                     generator=self.name)


def _trim(parts: list[tuple[str, str]], tone: Tone, protected: set[str],
          support: dict[str, int]) -> list[tuple[str, str]]:
    """Drop the least supported sentences (latest first) until the draft is no longer than
    the bot's answers typically are; protected sentences stay whatever the length."""
    if tone.max_words is None or tone.max_sentences is None:
        return parts
    parts = list(parts)

    def too_long() -> bool:
        return (sum(word_count(s) for s, _ in parts) > (tone.max_words or 0)
                or len(parts) > (tone.max_sentences or 0))

    while too_long():
        droppable = [i for i, (s, _) in enumerate(parts) if s not in protected]
        if not droppable:
            break
        worst = min(droppable, key=lambda i: (support.get(parts[i][0], 0), -i))
        del parts[worst]
    return parts


def _failed(exc: Exception) -> Draft:
    return Draft(NO_EVIDENCE_ANSWER, placeholder=True, warnings=[
        f"The offline generator failed on this gap ({type(exc).__name__}): write the answer."])
