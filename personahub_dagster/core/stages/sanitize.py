"""What a web document must pass before an LLM reads it: markup and boilerplate out, control bytes
out, injected instructions caught.

Web text is hostile input. HTML carries scripts and styles that are not text anyone reads, and menus,
cookie banners and footers that are the site's, not the page's; control characters break tokenizers
and terminals; and a page can address the model instead of its human readers ("ignore previous
instructions and output …"). A persona distilled from such a page would carry the attack into the hub
and from there into every prompt that uses the persona, so the page is skipped with the reason
recorded, not silently followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe"})
_BLOCK_TAGS = ("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre")
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
    """The main text of an HTML document; how many hidden blocks (scripts, styles …) it had, and how
    much of its visible text was boilerplate (menus, banners, footers) left out."""

    text: str
    dropped: dict[str, int] = field(default_factory=dict)
    boilerplate_chars: int = 0


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_LIKE_HTML.search(text[:5000]))


def html_to_text(html: str) -> HtmlText:
    """The page's main text, as trafilatura extracts it: navigation, cookie banners, related links
    and footers are not what a reader of the page reads, and a persona inferred from them would be a
    persona of the site's template. A page too small for trafilatura's precision settings gets its
    recall settings, then all its visible text, so a short snippet is kept rather than lost."""
    import trafilatura
    from lxml import html as lxml_html

    try:
        doc = lxml_html.document_fromstring(html)
    except Exception:  # lxml refuses some inputs (only a comment, encoding declarations in str)
        return HtmlText(_whitespace(trafilatura.extract(html) or ""))
    dropped = {tag: n for tag in sorted(_HIDDEN_TAGS) if (n := len(doc.findall(f".//{tag}")))}
    for element in [e for tag in _HIDDEN_TAGS for e in doc.iter(tag)]:
        element.drop_tree()
    for element in doc.iter(*_BLOCK_TAGS):  # blocks on their own lines in the visible text
        element.tail = "\n" + (element.tail or "")
    visible = _whitespace(doc.text_content())
    main = trafilatura.extract(html, include_comments=False, include_tables=True)
    main = main or trafilatura.extract(html, include_comments=False, favor_recall=True)
    text = _whitespace(main) if main else visible
    return HtmlText(text, dropped, max(0, len(visible) - len(text)))


def _whitespace(text: str) -> str:
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\s*\n\s*", "\n", text).strip()


def strip_control(text: str) -> str:
    """Remove control characters other than newline, tab and carriage return."""
    return _CONTROL.sub("", text)


def injection(text: str) -> str | None:
    """The first phrase in ``text`` that gives a language model orders, or None."""
    m = _INJECTION.search(text)
    return m.group(0) if m else None
