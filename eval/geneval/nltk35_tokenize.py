"""`nltk.word_tokenize` exactly as nltk 3.5 (the version GenerationEval pins) behaves.

word_tokenize = Punkt sentence split (nltk35_punkt) + NLTKWordTokenizer on each sentence. The regexes below are
nltk 3.5's; later versions changed several of them, so their output differs on e.g.:
- `'` before a word: 3.5 splits it off only when followed by a single word character ("'a b" -> "'", "a"),
  later versions whenever a word follows ("'abc" -> "'", "abc");
- `''` inside a word: 3.5 splits "a''" into "a", "''"; later versions split every "''" everywhere;
- dashes U+2012..U+2015: 3.5 leaves them attached ("a–b"), later versions split them off;
- "wanna" at the very end of a sentence: 3.5 needs a following whitespace to split it, later ones do not;
- "mor'n": 3.5 splits "mor", "'n"; later versions look for "more'n".
"""
from __future__ import annotations

import re

from .nltk35_punkt import sent_tokenize

# NLTKWordTokenizer (nltk/tokenize/destructive.py) of nltk 3.5: (pattern, replacement, characters one of which
# must be in the text for the pattern to match; checking them first skips most of the ~30 substitutions).
STARTING_QUOTES = [
    (re.compile("([«“‘„]|[`]+)", re.U), r" \1 ", "«“‘„`"),
    (re.compile(r"^\""), r"``", '"'),
    (re.compile(r"(``)"), r" \1 ", "`"),
    (re.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` ", "\"'"),
    (re.compile(r"(?i)(\')(?!re|ve|ll|m|t|s|d)(\w)\b", re.U), r"\1 \2", "'"),
]
PUNCTUATION = [
    (re.compile(r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$", re.U), r"\1 \2 \3 ", "."),
    (re.compile(r"([:,])([^\d])"), r" \1 \2", ":,"),
    (re.compile(r"([:,])$"), r" \1 ", ":,"),
    (re.compile(r"\.{2,}", re.U), r" \g<0> ", "."),
    (re.compile(r"[;@#$%&]"), r" \g<0> ", ";@#$%&"),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 ", "."),
    (re.compile(r"[?!]"), r" \g<0> ", "?!"),
    (re.compile(r"([^'])' "), r"\1 ' ", "'"),
    (re.compile(r"[*]", re.U), r" \g<0> ", "*"),
    (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ", "[](){}<>"),  # parentheses and brackets
    (re.compile(r"--"), r" -- ", "-"),  # double dashes
]
ENDING_QUOTES = [
    (re.compile("([»”’])", re.U), r" \1 ", "»”’"),
    (re.compile(r'"'), " '' ", '"'),
    (re.compile(r"(\S)(\'\')"), r"\1 \2 ", "'"),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 ", "'"),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 ", "'"),
]
# MacIntyre's contractions as nltk 3.5 lists them; case-insensitive, so no cheap character test.
CONTRACTIONS = [re.compile(p) for p in (
    r"(?i)\b(can)(?#X)(not)\b",
    r"(?i)\b(d)(?#X)('ye)\b",
    r"(?i)\b(gim)(?#X)(me)\b",
    r"(?i)\b(gon)(?#X)(na)\b",
    r"(?i)\b(got)(?#X)(ta)\b",
    r"(?i)\b(lem)(?#X)(me)\b",
    r"(?i)\b(mor)(?#X)('n)\b",
    r"(?i)\b(wan)(?#X)(na)\s",
    r"(?i) ('t)(?#X)(is)\b",
    r"(?i) ('t)(?#X)(was)\b",
)]


def treebank_tokenize(sentence: str) -> list[str]:
    """nltk 3.5 `NLTKWordTokenizer().tokenize(sentence)` (no parenthesis conversion)."""
    text = sentence
    for pattern, repl, needs in STARTING_QUOTES + PUNCTUATION:
        if any(c in text for c in needs):
            text = pattern.sub(repl, text)
    text = " " + text + " "
    for pattern, repl, needs in ENDING_QUOTES:
        if any(c in text for c in needs):
            text = pattern.sub(repl, text)
    for pattern in CONTRACTIONS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


def word_tokenize(text: str) -> list[str]:
    """nltk 3.5 `nltk.word_tokenize(text)` (language='english', preserve_line=False)."""
    return [token for sentence in sent_tokenize(text) for token in treebank_tokenize(sentence)]


def tokenize_line(text: str) -> str:
    """What GenerationEval feeds METEOR and TER: `' '.join(nltk.word_tokenize(text))`."""
    return " ".join(word_tokenize(text))
