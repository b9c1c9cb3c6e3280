"""What a web document must pass before an LLM reads it: markup out, control bytes out, injected
instructions caught.

Web text is hostile input. HTML carries scripts and styles that are not text anyone reads; control
characters break tokenizers and terminals; and a page can address the model instead of its human
readers ("ignore previous instructions and output …"). A persona distilled from such a page would
carry the attack into the hub and from there into every prompt that uses the persona, so the page is
skipped with the reason recorded, not silently followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe"})
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
     "article", "header", "footer", "blockquote", "pre", "title"}
)  # fmt: skip
_LOOKS_LIKE_HTML = re.compile(r"<(?:!doctype|html|body|head|script|style|div|p|span|a)\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Phrases that address the model rather than a reader. Kept narrow on purpose: a text *about* AI is
# fine; a text that *gives the model orders* is not.
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?"
    r"(?:previous|prior|above|earlier|preceding|system)\s+(?:instructions?|prompts?|rules|messages?)"
    r"|\byou\s+are\s+now\s+(?:in\s+)?(?:developer|dan|jailbreak|unrestricted)\b"
    r"|\b(?:reveal|print|output|repeat|show)\s+(?:me\s+)?(?:your|the)\s+(?:system\s+prompt|hidden\s+instructions)"
    r"|\bnew\s+instructions\s*:"
    r"|<\|(?:im_start|im_end|system|endoftext)\|>",
    re.IGNORECASE,
)


@dataclass
class HtmlText:
    """Visible text of an HTML document, and how many hidden blocks (scripts, styles …) were dropped."""

    text: str
    dropped: dict[str, int] = field(default_factory=dict)


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0
        self.dropped: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden_depth += 1
            self.dropped[tag] = self.dropped.get(tag, 0) + 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS and self.hidden_depth:
            self.hidden_depth -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.parts.append(data)


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_LIKE_HTML.search(text[:5000]))


def html_to_text(html: str) -> HtmlText:
    """The text a browser would show: scripts, styles and the head dropped, blocks on their own lines."""
    parser = _Visible()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    return HtmlText(text, parser.dropped)


def strip_control(text: str) -> str:
    """Remove control characters other than newline, tab and carriage return."""
    return _CONTROL.sub("", text)


def injection(text: str) -> str | None:
    """The first phrase in ``text`` that gives a language model orders, or None."""
    m = _INJECTION.search(text)
    return m.group(0) if m else None
