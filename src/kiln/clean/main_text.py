"""Main text of an article page: resiliparse's DOM, a rule-based choice of the content block, resiliparse's text.

The `main_text` extraction engine (kiln's default). General rules only (no per-site rules), the classic
Boilerpipe/Readability features on resiliparse's fast C DOM:

1. Blocks: every paragraph-like element (`p`, `pre`, `blockquote`, `h2`-`h4`; on a page with almost no `<p>`,
   also the parents of `<br>`) with at least 25 characters scores its text length less twice its link text.
   A block that is mostly links (navigation, "Read also: ..." teasers) scores nothing and is removed.
2. Boilerplate: a block inside an element that is boilerplate by tag (`nav`, `aside`, `footer`, `form`,
   `figure`, `dialog`, ARIA navigation/complementary/contentinfo/banner roles, `hidden`) or by class/id
   (Readability's "unlikely candidates" vocabulary: comment, related, share, sidebar, cookie, newsletter,
   promo, menu, byline, caption, ..., unless the name also says article/body/content/main/story/entry) counts
   for nothing, and that element is removed. An element that holds half the page's paragraphs is never
   boilerplate, whatever its name (ASP.NET pages wrap the whole body in one `<form>`).
3. Root: scores add up the tree; the root is the deepest element holding `ROOT_SHARE` (0.8) of the page's score.
   An article split into sibling sections keeps all its sections; a teaser list or a comment thread of short
   linked lines counts for little. Everything outside the root is removed.
4. Text: resiliparse's `extract_plain_text` (main-content mode: headings, paragraph breaks, its own inline
   boilerplate rules) on what is left, with the article's lists kept (resiliparse drops every `<ul>`), then
   short lines of boilerplate vocabulary ("Advertisement", "Share this", cookie banners, a caption ending in
   "(Photo: ...)") dropped. If resiliparse drops the whole root, the root is taken whole.

Measured with benchmarks/extract.py (docs/benchmarks.md): bag-of-words F1 0.972 on the 47-page extraction dev
set (the previous default, resiliparse's main-content mode alone, 0.938 with precision 0.90: it kept headlines,
captions, teaser lists and banners; trafilatura 0.965, FineWeb's settings 0.957) at ~0.5x plain resiliparse's
pages/s on the real WARC pages (trafilatura ~0.05x). The page's `<h1>` is kept (the issue asks for headings;
the dev set's reference bodies leave the headline out, which costs 0.007 F1). Choices and their measurements:
`ROOT_SHARE` 0.6/0.7/0.75/0.8/0.9 gave F1 0.969/0.972/0.969/0.968/0.963 before the later rules; 0.8 was taken
because 0.75 cut the first section off a real FAQ page (commoncrawl.org/faq) with sections in sibling elements.
Headings as blocks: +0.006 F1. Mostly-linked blocks removed and the boilerplate lines: +0.004. Lists: +0.002.

Where time goes (per WARC page, CPU): parse 0.2 ms, root choice 0.45 ms, resiliparse's text 0.6 ms, the rest
0.25 ms; resiliparse alone 0.8 ms. Most of the root choice is resiliparse creating a Python object for each
element handed over (~5 us each, a weak-reference map), so the code asks for as few elements as it can.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Elements that do not hold the article, removed unless they hold half the page: ASP.NET sites wrap the whole
# body in one <form>, some themes the whole page in an `aria-hidden` wrapper behind a modal. `header` stays:
# inside an article it often wraps the first paragraph.
_BOILERPLATE_TAGS = frozenset({"nav", "aside", "footer", "form", "figure", "dialog"})
_BOILERPLATE_ROLES = frozenset({"navigation", "complementary", "contentinfo", "banner", "dialog"})
_KEEP_TAGS = frozenset({"body", "html", "article", "main"})
# Readability's unlikely-candidate vocabulary (plus cookie/consent/newsletter/subscribe/promo), on class and id.
_UNLIKELY = re.compile(
    r"comment|related|share|social|sidebar|cookie|consent|gdpr|newsletter|subscri|promo|sponsor|advert|banner|"
    r"breadcrumb|pagination|pager|popup|modal|disqus|recommend|trending|most-?popular|outbrain|taboola|"
    r"sign-?up|menu|masthead|footer|byline|author|caption|tags|widget|rss"
)
_MAYBE = re.compile(r"article|body|content|main|story|entry|text|post-?content|column", re.IGNORECASE)
_BLOCKS = "p, pre, blockquote, h2, h3, h4"
_BLOCK_LIST = _BLOCKS.split(", ")
_LINK_CHECK_CHARS = 400  # blocks this long are prose whatever their links (see `_blocks`)
_BLOCK_TAGS = frozenset(_BLOCKS.split(", ")) | {"li", "a", "span", "b", "strong", "em", "i", "font"}
_MIN_BLOCK_CHARS = 25  # shorter blocks (labels, dates, buttons) say nothing about where the article is
_ENOUGH_BLOCK_CHARS = 500  # blocks holding this much text need no help from <br> parents to place the root
_MIN_PARAGRAPHS = 5  # with fewer <p>, "half the page" is measured in characters (slower: script text counts)
ROOT_SHARE = 0.8  # the root is the deepest element holding this share of the counted text (see below)
# Whole lines of boilerplate vocabulary, at most `_MAX_BOILERPLATE_CHARS` long (a longer line is prose even if it
# mentions cookies), matched over the whole text in one pass (MULTILINE). Two patterns: lines that start with the
# vocabulary fail fast at most line starts; lines that merely contain it (a cookie banner, a caption ending in
# its credit) make the regex try every position of every line, so that pattern runs only where a quick search
# finds one of its words. Line-by-line tests in Python, then one pattern for both, each cost ~10% of the
# extraction on the WARC pages.
_MAX_BOILERPLATE_CHARS = 200
_REST = rf"[^\n]{{0,{_MAX_BOILERPLATE_CHARS}}}"
_STARTS_BOILERPLATE = re.compile(
    r"^[^\w\n]*(advert(isement)?|sponsored|share( this| on| article)?|related( articles| stories| posts)?|"
    rf"read more|(sign up|subscribe)\b{_REST}|all rights reserved{_REST}|copyright\b{_REST}|©{_REST}|"
    rf"(photo|image|picture)s?( credit)?:{_REST}|(previous|next)( article| post| story)?|tags?|"
    r"\d* ?comments?|(leave|post|add) a (comment|reply)|don't miss|(also|most) (read|popular)|trending( now)?|"
    rf"skip to {_REST})[^\w\n]*(\n|$)",
    re.IGNORECASE | re.MULTILINE,
)
_CONTAINED_WORDS = re.compile(r"cookie|newsletter|\((photo|image|picture|credit)", re.IGNORECASE)
_CONTAINS_BOILERPLATE = re.compile(
    rf"^(?=[^\n]{{0,{_MAX_BOILERPLATE_CHARS}}}$)[^\n]*(\b(uses? cookies|cookies? (policy|settings|preferences|notice)|"
    r"accept (all )?cookies|(our|the|daily|weekly) newsletter)\b[^\n]*|"
    r"\((photo|image|picture|credit)s?:[^)\n]*\)[^\w\n]*)(\n|$)",
    re.IGNORECASE | re.MULTILINE,
)
_MARK = "\x01"  # before each item of a protected list (a control character: never in text resiliparse emits)
_BULLET_MARK = re.compile(r"^( *)\d+\. \x01", re.MULTILINE)


class _Verdicts:
    """Whether an element is boilerplate (by tag, class or id), decided once per element and only for the
    ancestors of text blocks: a CSS query for the vocabulary cost ~2 ms a page (88 substring selectors over
    every element), longer than parsing it; the ancestors of a page's blocks are a few hundred elements."""

    def __init__(self, body: Any) -> None:
        self.body = body
        page_paragraphs = len(body.get_elements_by_tag_name("p"))
        self.by_paragraphs = page_paragraphs >= _MIN_PARAGRAPHS
        self.page_size = page_paragraphs if self.by_paragraphs else -1  # characters: measured when first needed
        self.seen: dict[Any, bool] = {}

    def __call__(self, node: Any) -> bool:
        verdict = self.seen.get(node)
        if verdict is None:
            verdict = self.seen[node] = self._decide(node)
        return verdict

    def _decide(self, node: Any) -> bool:
        tag = node.tag
        if tag in _KEEP_TAGS:
            return False
        names = f"{node.getattr('class') or ''} {node.getattr('id') or ''}".lower().strip()
        role = node.getattr("role")
        boilerplate_by_markup = (
            tag in _BOILERPLATE_TAGS
            or (role is not None and role in _BOILERPLATE_ROLES)
            or node.getattr("hidden") is not None
            or node.getattr("aria-hidden") == "true"
        )
        if not boilerplate_by_markup and (not names or not _UNLIKELY.search(names) or _MAYBE.search(names)):
            return False
        # A wrapper of half the page is not a sidebar, whatever its name (ASP.NET wraps the page in a <form>).
        if self.by_paragraphs:
            return len(node.get_elements_by_tag_name("p")) * 2 <= self.page_size
        if self.page_size < 0:
            self.page_size = len(self.body.text)
        return len(node.text) * 2 <= self.page_size


def _blocks(body: Any, few_paragraphs: bool) -> Iterator[tuple[Any, int, int]]:
    """(element, characters of text, characters of link text) of the paragraph-like elements with at least
    `_MIN_BLOCK_CHARS`: `_BLOCKS`, and on a page of `few_paragraphs` the parents of `<br>` that are none of those
    (text laid out with line breaks in a `div` or `td`, as Readability turns such a `div` into a paragraph;
    where a page has paragraphs, or its few blocks hold `_ENOUGH_BLOCK_CHARS`, its `<br>`s are mostly in
    addresses and footers, and cost ~5 us each: 0.2 ms a page on the WARC pages, a quarter of resiliparse's time).

    Costs, measured on the WARC and docs pages of benchmarks/extract.py: a `query_selector_all` costs ~0.2 ms a
    page whatever it matches, `get_elements_by_tag_name` ~0.005 ms; each element handed to Python ~5 us
    (resiliparse keeps a weak-reference map of them). So elements come by tag name, and links are only looked at
    in short blocks: navigation and teasers are short, and a long paragraph's links are never most of it.
    An element's text includes its scripts' and styles' (a shop page had 1,700 characters of JavaScript in a
    <p>): they are subtracted where there are any."""
    found = 0
    for tag in _BLOCK_LIST:
        for block in body.get_elements_by_tag_name(tag).values():
            measured = _text_and_links(block)
            if measured is not None:
                found += measured[0]
                yield block, *measured
    if not few_paragraphs or found >= _ENOUGH_BLOCK_CHARS:
        return
    seen: set[Any] = set()
    for br in body.get_elements_by_tag_name("br").values():
        parent = br.parent
        if parent is None or parent is body or parent in seen or parent.tag in _BLOCK_TAGS:
            continue
        seen.add(parent)
        measured = _text_and_links(parent)
        if measured is not None:
            yield parent, *measured


def _text_and_links(node: Any) -> tuple[int, int] | None:
    """(characters of text, characters of link text), or None when the text is under `_MIN_BLOCK_CHARS`."""
    text = node.text
    chars = len(text.strip())
    if chars < _MIN_BLOCK_CHARS:
        return None
    if ";" in text or "{" in text:  # script and style text always has one of these; most prose has neither
        for tag in ("script", "style"):
            if len(node.get_elements_by_tag_name(tag)):
                chars -= sum(len(n.text) for n in node.get_elements_by_tag_name(tag).values())
        if chars < _MIN_BLOCK_CHARS:
            return None
    if chars >= _LINK_CHECK_CHARS or not len(node.get_elements_by_tag_name("a")):
        return chars, 0
    return chars, sum(len(a.text) for a in node.get_elements_by_tag_name("a").values())


def _choose_root(body: Any, is_boilerplate: _Verdicts) -> tuple[Any, set[Any]]:
    """(the deepest element holding `ROOT_SHARE` of the page's block text, link text discounted and blocks inside
    boilerplate not counted; the outermost boilerplate elements found on the way) (passes 1 and 2).

    Each element's parent, depth and outermost boilerplate ancestor are worked out once (memo), and a block's
    score goes to its parent only, then up the tree in one pass, deepest first: walking every block's whole
    chain of ancestors cost ~3x more (blocks nest ~10 deep and share most of their ancestors)."""
    parent_of: dict[Any, Any] = {}
    depth: dict[Any, int] = {body: 0}
    outer_bp: dict[Any, Any] = {body: None}  # element -> outermost boilerplate element at or above it, or None
    weight: dict[Any, float] = {}
    found: set[Any] = set()
    total = 0.0
    for block, chars, link_chars in _blocks(body, not is_boilerplate.by_paragraphs):
        path = []
        node = block
        while node not in depth:
            path.append(node)
            parent = node.parent
            if parent is None:  # detached (not under body): count nothing from it
                break
            parent_of[node] = node = parent
        else:
            for n in reversed(path):  # top down
                up = parent_of[n]
                depth[n] = depth[up] + 1
                outer_bp[n] = outer_bp[up] if outer_bp[up] is not None else (n if is_boilerplate(n) else None)
        if block not in depth:
            continue
        if outer_bp[block] is not None:
            found.add(outer_bp[block])
            continue
        score = chars - 2 * link_chars
        if score <= 0:  # a mostly-linked block is navigation or a teaser ("Read also: <a>...</a>"): removed
            found.add(block)
            continue
        total += score
        up = parent_of[block]
        weight[up] = weight.get(up, 0.0) + score
    if total <= 0:
        return body, found
    for node in sorted(depth, key=depth.__getitem__, reverse=True):  # children before parents
        if node is not body and node in weight:
            up = parent_of[node]
            weight[up] = weight.get(up, 0.0) + weight[node]
    # Those over the threshold form one chain (the threshold is over half); the deepest has the least weight.
    best, best_weight = body, total
    for node, w in weight.items():
        if node is not body and w >= ROOT_SHARE * total and w < best_weight:
            best, best_weight = node, w
    return best, found


def _keep_only(root: Any, body: Any, boilerplate: set[Any]) -> None:
    """Remove the boilerplate inside `root` and everything outside it: every sibling of `root` and of each of
    its ancestors up to `body`."""
    for node in boilerplate:
        if root is not node and root.contains(node):
            node.decompose()
    node = root
    while node is not None and node is not body:
        parent = node.parent
        if parent is None:
            break
        for sibling in parent.child_nodes.values():
            if sibling is not node:
                sibling.decompose()
        node = parent


def _protect_lists(tree: Any, root: Any) -> None:
    """resiliparse's main-content mode drops every `<ul>` (as navigation), even a list of sentences inside the
    article. Inside the chosen root, most navigation is gone already, so each `<ul>` that is not a list of
    links becomes an `<ol>` (which it keeps) with a mark before each item, and the marks' numbers turn back into
    bullets after extraction (`_BULLET_MARK`)."""
    uls = root.get_elements_by_tag_name("ul")
    if not len(uls):
        return
    for ul in uls.values():
        # Navigation is a list of links: one in half the items or more. Counting them is ~10x cheaper than
        # measuring their text (on the docs pages' nested tables of contents).
        if 2 * len(ul.get_elements_by_tag_name("a")) >= len(ul.get_elements_by_tag_name("li")):
            continue
        parent = ul.parent
        if parent is None:
            continue
        ol = tree.create_element("ol")
        parent.insert_before(ol, ul)
        for child in ul.child_nodes.values():
            if child.tag == "li":
                child.insert_before(tree.create_text_node(_MARK), child.first_child)
            ol.append_child(child)
        ul.decompose()


def _drop_boilerplate_lines(text: str) -> str:
    """Lines that are boilerplate vocabulary and short (pass 3)."""
    text = _STARTS_BOILERPLATE.sub("", text)
    return _CONTAINS_BOILERPLATE.sub("", text) if _CONTAINED_WORDS.search(text) else text


def extract_main_text(html: str, url: str = "") -> str:
    """The main text of `html` (see the module docstring); `url` is unused (no per-site rules)."""
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    body = tree.body
    if body is None:
        return ""
    root, boilerplate = _choose_root(body, _Verdicts(body))
    _keep_only(root, body, boilerplate)
    _protect_lists(tree, root)
    text = _text(tree, main_content=True)
    if len(text) < _MIN_BLOCK_CHARS and len(root.text.strip()) >= 4 * _MIN_BLOCK_CHARS:
        # resiliparse's own main-content rules dropped the whole root (a class name such as "carousel" on it):
        # the root was chosen for its prose, so take it whole.
        text = _text(tree, main_content=False)
    text = _BULLET_MARK.sub(r"\1• ", text).replace(_MARK, "")
    return _drop_boilerplate_lines(text).strip()  # a dropped first line can leave the next one's indentation


def _text(tree: Any, main_content: bool) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(
        tree,
        preserve_formatting=True,
        main_content=main_content,
        list_bullets=True,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
        comments=False,
        post_meta=False,
    )
