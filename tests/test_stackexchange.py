"""StackExchange stage on the real site dumps in samples/stackexchange (no mocks), plus damaged
copies of them built here: BOM/DOCTYPE, truncation, undecodable bytes, reordered rows, .7z archives;
HTML to text, links and images with their URLs."""

import re
import shutil
import sqlite3
from pathlib import Path

import py7zr
import pyarrow.parquet as pq
import pytest

from stages.stackexchange import (
    ANSWERS_IN_ORDER,
    JOIN_TABLES,
    QUESTIONS_IN_ORDER,
    STACKEXCHANGE_SCHEMA,
    _RowParser,
    answer_order,
    count_posts,
    extract_stackexchange,
    html_to_text,
    layout,
    parse_tags,
    select_sites,
    site_base_url,
    site_name,
)

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "stackexchange"
HISTORY = SAMPLES / "history.meta.stackexchange.com"
COFFEE = SAMPLES / "coffee.stackexchange.com"
ANSWER_LABEL = re.compile(r"^Answer (\d+) \(score (-?\d+)(, accepted)?\):$", re.M)
HTML_TAG = re.compile(r"</?(p|a|li|ul|ol|code|pre|strong|em|blockquote|br|img|h[1-6]|hr|sup|sub|kbd|div|span|s|del|strike|b|i)(\s[^>]*)?/?>", re.I)
ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|nbsp|hellip|#\d+|#x[0-9a-f]+);", re.I)


def run(source, tmp, name="run", **kwargs):
    out, dropped = tmp / f"{name}.parquet", tmp / f"{name}-dropped.parquet"
    stats = extract_stackexchange(str(source), str(out), dropped_path=str(dropped), **kwargs)
    return stats, pq.read_table(out).to_pylist(), pq.read_table(dropped).to_pylist()


def site_copy(tmp: Path, name: str, data: bytes) -> Path:
    """A site directory holding `data` as its Posts.xml."""
    site = tmp / name
    site.mkdir(parents=True)
    (site / "Posts.xml").write_bytes(data)
    return site


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def row_line(lines: list[bytes], post_id: int) -> int:
    marker = f'<row Id="{post_id}" '.encode()
    return next(i for i, line in enumerate(lines) if marker in line)


def answer_scores(text: str) -> list[int]:
    return [int(m.group(2)) for m in ANSWER_LABEL.finditer(text)]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return run(HISTORY, tmp_path_factory.mktemp("history"))


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    return run(COFFEE, tmp_path_factory.mktemp("coffee"))


# -- real samples -----------------------------------------------------------------------------


def test_history_accounting(history):
    stats, docs, dropped = history
    assert stats.docs_in == 1657 == stats.counters["rows"]
    assert stats.counters["questions"] == 556 and stats.counters["answers"] == 1095
    assert stats.dropped["post_type_tag_wiki"] == 3 and stats.dropped["post_type_tag_wiki_excerpt"] == 3
    assert stats.dropped["answer_merged_into_question"] == 1095
    assert stats.docs_out == len(docs) == 556
    assert stats.docs_in == stats.docs_out + sum(stats.dropped.values())
    assert len(dropped) == sum(stats.dropped.values())
    assert stats.counters["unanswered_kept"] == sum(1 for d in docs if d["answer_count"] == 0) == 64
    assert sum(d["answer_count"] for d in docs) == 1095
    assert stats.bytes_out > 0


def test_history_documents(history):
    _, docs, _ = history
    assert [d["question_id"] for d in docs] == sorted(d["question_id"] for d in docs)
    assert len({d["id"] for d in docs}) == len(docs)
    scores = []
    for d in docs:
        assert d["id"] == f"stackexchange/history.meta.stackexchange.com/{d['question_id']}"
        assert d["source"] == "stackexchange" and d["site"] == "history.meta.stackexchange.com"
        assert d["url"] == f"https://history.meta.stackexchange.com/questions/{d['question_id']}"
        assert d["text"].startswith(d["title"] + "\n\n") and d["tags"] and d["post_type"] == "question"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", d["creation_date"])
        labels = ANSWER_LABEL.findall(d["text"])
        assert [int(n) for n, _, _ in labels] == list(range(1, d["answer_count"] + 1))
        scores += [d["score"]] + answer_scores(d["text"])
    # Every question and answer is in a document: the sample's scores run from -13 to 41.
    assert len(scores) == 556 + 1095 and min(scores) == -13 and max(scores) == 41
    first = docs[0]
    assert first["title"] == "Should we include sources in answers?" and first["score"] == 18
    assert first["tags"] == ["discussion", "answers"] and first["accepted_answer_id"] is None
    assert first["text"].startswith("Should we include sources in answers?\n\nAs a historian I know that")


def test_answers_sorted_numerically(history):
    _, docs, _ = history
    mixed = []
    for d in docs:
        scores = answer_scores(d["text"])
        assert scores == sorted(scores, reverse=True), d["id"]
        if any(s >= 10 for s in scores) and any(0 <= s < 10 for s in scores):
            mixed.append(d)
    assert len(mixed) >= 20
    # Question 1: answers scored 26, 10, 5, 5, 2, 1. Sorting the strings would put "5" before "26".
    q1 = next(d for d in mixed if d["question_id"] == 1)
    assert answer_scores(q1["text"]) == [26, 10, 5, 5, 2, 1]
    assert sorted(map(str, answer_scores(q1["text"])), reverse=True) != [str(s) for s in answer_scores(q1["text"])]
    assert q1["text"].index("Answer 1 (score 26):\nI know it's considered in bad form") > 0
    # Equal scores keep the older answer first.
    assert q1["text"].index("Answer 3 (score 5):") < q1["text"].index("Answer 4 (score 5):")


def test_no_html_left(history, coffee):
    raw = (HISTORY / "Posts.xml").read_text("utf-8-sig") + (COFFEE / "Posts.xml").read_text("utf-8-sig")
    # Bodies that show HTML source as text (escaped twice in the dump) keep it, as the page does.
    assert "&amp;lt;a href=" in raw
    for d in history[1] + coffee[1]:
        if d["question_id"] == 3589:  # the moderator-nomination template: literal <a>/<img> source
            assert '<a href="https://history.stackexchange.com/users/UserID">' in d["text"]
            continue
        assert not HTML_TAG.search(d["text"]), (d["id"], HTML_TAG.search(d["text"]))
        assert not ENTITY.search(d["text"]), (d["id"], ENTITY.search(d["text"]))
    q67 = next(d for d in history[1] if d["question_id"] == 67)["text"]
    # Links keep their URL after their text.
    assert ("Recently our site editor (https://history.meta.stackexchange.com/users/30/robert-cartaino) posed "
            "the question (https://history.meta.stackexchange.com/questions/59/do-we-need-a-history-site-what-are-"
            "you-getting-out-of-this) 'do we need a history site'") in q67
    assert "- How does a refrigerator work? (http://www.goog" in q67


def test_links_and_images_in_the_samples(history, coffee):
    texts = [d["text"] for d in history[1] + coffee[1]]
    # Relative tag links made absolute on the site; a tag badge keeps only its name.
    raw = (COFFEE / "Posts.xml").read_text("utf-8-sig")
    assert "&lt;a href=&quot;/questions/tagged/moka&quot; class=&quot;post-tag&quot;" in raw
    assert not any("(/questions/" in t for t in texts)
    images = [m.group(0) for t in texts for m in re.finditer(r"\[image: [^\]]*\]", t)]
    assert len(images) > 100 and not any("enter image description here" in i for i in images)
    assert "[image: hexagon thingy (http://i.imgur.com/SwXYrHa.jpg)]" in images
    # SE's full-size wrapper (<a href=X><img src=X></a>) is the image alone; a flair image links to the profile.
    assert any("[image: https://i.stack.imgur.com/t7O8s.png]" in t and "t7O8s.png) (" not in t for t in texts)
    assert any("[image: MichaelF (https://history.stackexchange.com/users/flair/114.png)] "
               "(https://history.stackexchange.com/users/114/michaelf)" in t for t in texts)


def test_code_block_verbatim(history):
    _, docs, _ = history
    text = next(d for d in docs if "Beginning merge of question.Id" in d["text"])["text"]
    # <pre> keeps its line breaks and its blank line, with no markup.
    assert (
        "Beginning merge of question.Id = 22665 into question.Id = 15528 \n\nMoved 1 answers to master \n"
        "Moved 0 comments to master \nMoved 0 favorite votes to master \nMaster now has 4 active answers \n"
        "Master now has 9 active comments \n\nMaster now has 0 favorites \nSuccessful merge\n\n"
    ) in text
    code = next(d for d in docs if "Don't ask about..." in d["text"])["text"]
    assert "Don't ask about...\n\nGenealogy\nAsking for reference material\nPredicting the future" in code


def test_coffee_accepted_answers(coffee):
    stats, docs, _ = coffee
    assert stats.docs_in == 592 and stats.docs_out == 225
    assert stats.dropped["answer_merged_into_question"] == 327
    assert stats.dropped["post_type_tag_wiki"] == 20 == stats.dropped["post_type_tag_wiki_excerpt"]
    with_accepted = [d for d in docs if d["accepted_answer_id"] is not None]
    assert len(with_accepted) >= 100 and stats.counters["accepted_in_text"] == len(with_accepted)
    for d in with_accepted:
        assert d["text"].count(", accepted):") == 1
    q1 = docs[0]
    assert q1["question_id"] == 1 and q1["accepted_answer_id"] == 24 and q1["tags"] == ["storage", "whole-bean"]
    assert "(score 15, accepted):" in q1["text"] and answer_scores(q1["text"])[0] == 15


def test_join_queries_need_no_sort():
    db = sqlite3.connect(":memory:")
    for statement in JOIN_TABLES:
        db.execute(statement)
    for query in (QUESTIONS_IN_ORDER, ANSWERS_IN_ORDER):
        plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + query))
        assert "TEMP B-TREE" not in plan, plan


def test_deterministic(tmp_path, coffee):
    run(COFFEE, tmp_path, "a")
    run(COFFEE, tmp_path, "b")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert (tmp_path / "a-dropped.parquet").read_bytes() == (tmp_path / "b-dropped.parquet").read_bytes()
    assert pq.read_schema(tmp_path / "a.parquet") == STACKEXCHANGE_SCHEMA
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp dir and files removed


# -- layout and HTML --------------------------------------------------------------------------


def test_answer_order_numeric_and_ties():
    answers = [(5, 9, "a"), (6, 10, "b"), (7, -1, "c"), (8, -13, "d"), (9, 10, "e"), (3, 10, "f"), (4, 2, "g")]
    assert [a[0] for a in answer_order(answers, None)] == [3, 6, 9, 5, 4, 7, 8]
    assert [a[0] for a in answer_order(answers, 9)] == [9, 3, 6, 5, 4, 7, 8]  # accepted first among equals
    text = layout("T", "Q", [(9, 10, "e"), (3, 10, "f")], 9)
    assert text == "T\n\nQ\n\nAnswer 1 (score 10, accepted):\ne\n\nAnswer 2 (score 10):\nf"


def test_html_to_text():
    html = (
        "<h2>Head &amp; shoulders</h2><p>One  <em>two</em>\n<a href='http://x.org'>three</a> "
        "<code>a &lt; b</code>&nbsp;four<br>five</p>"
        "<ul><li>x<ul><li>nested</li></ul></li><li><p>y</p><p>y2</p></li></ul>"
        '<ol start="3"><li>third<li>fourth</ol>'
        "<blockquote><p>quoted</p><p>more</p></blockquote>"
        "<pre><code>def f():\n    return '&lt;x&gt;'\n\n\nprint(f())\n</code></pre>"
        '<p><img src="i.png" alt="enter image description here"></p><hr><p>end</p>'
    )
    assert html_to_text(html) == (
        "Head & shoulders\n\n"
        "One two three (http://x.org) a < b four\nfive\n\n"
        "- x\n  - nested\n- y\n  y2\n\n"
        "3. third\n4. fourth\n\n"
        "> quoted\n>\n> more\n\n"
        "def f():\n    return '<x>'\n\n\nprint(f())\n\n"
        "[image: i.png]\n\n"
        "end"
    )
    assert html_to_text("") == "" and html_to_text("<p> </p><img>") == ""
    assert html_to_text("<p> </p><img src=x>") == "[image: x]"
    assert html_to_text("<p>unclosed <b>bold<p>next</div></span>") == "unclosed bold\n\nnext"
    assert html_to_text("<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>") == "a | b\n1 | 2"


BASE = "https://coffee.stackexchange.com/"


@pytest.mark.parametrize("html, base, expected", [
    ('<a href="https://en.wikipedia.org/wiki/Moka_pot">moka pot</a>', None,
     "moka pot (https://en.wikipedia.org/wiki/Moka_pot)"),
    ('<a href="https://example.com/a" rel="nofollow noreferrer">https://example.com/a</a>', None, "https://example.com/a"),
    ('see <a href="http://skeptics.stackexchange.com">skeptics.stackexchange.com</a>.', None,
     "see skeptics.stackexchange.com."),  # the text is the URL without its scheme
    ('<a href="https://www.example.com/">example.com</a>', None, "example.com"),
    ('<a href="https://example.com/x"></a>', None, "https://example.com/x"),  # no text: the URL
    ('<a href="/questions/123/why">this question</a>', BASE,
     "this question (https://coffee.stackexchange.com/questions/123/why)"),
    ('<a href="/questions/123/why">this question</a>', None, "this question (/questions/123/why)"),
    ('<a href="../q/5">up</a>', BASE, "up (https://coffee.stackexchange.com/q/5)"),
    ('<img src="//i.stack.imgur.com/abc.png" alt="a grinder">', BASE, "[image: a grinder (https://i.stack.imgur.com/abc.png)]"),
    ('<img src="//i.stack.imgur.com/abc.png" alt="a grinder">', None, "[image: a grinder (//i.stack.imgur.com/abc.png)]"),
    ('<img src="https://i.stack.imgur.com/abc.png" alt="enter image description here">', None,
     "[image: https://i.stack.imgur.com/abc.png]"),
    ('<img src="https://i.stack.imgur.com/abc.png">', None, "[image: https://i.stack.imgur.com/abc.png]"),
    ('<img alt="a chart">', None, "[image: a chart]"),
    ('<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot">', None, "[image: dot]"),
    ('<a href="https://i.stack.imgur.com/abc.png" rel="nofollow noreferrer">'
     '<img src="https://i.stack.imgur.com/abc.png" alt="enter image description here"></a>', None,
     "[image: https://i.stack.imgur.com/abc.png]"),  # the full-size wrapper: the image alone
    ('<a href="/users/85/steven"><img src="/users/flair/85.png" alt="Steven"></a>', BASE,
     "[image: Steven (https://coffee.stackexchange.com/users/flair/85.png)] "
     "(https://coffee.stackexchange.com/users/85/steven)"),
    ('<a href="/questions/tagged/moka" class="post-tag" title="show questions tagged \'moka\'" rel="tag">moka</a>',
     BASE, "moka"),
    ('<a href="#note-1">[1]</a>', BASE, "[1]"),  # a same-page anchor
    ('<a href="mailto:jane@example.com">write to me</a>', None, "write to me"),
    ('<a href="javascript:void(0)">click</a>', None, "click"),
    ('<a name="top">Top</a>', None, "Top"),  # no href
    ('<a href=" https://example.com/a b\n/c ">x</a>', None, "x (https://example.com/a%20b/c)"),
    ('<a href="//[broken">x</a>', BASE, "x"),  # an unparseable address
    ('<a href="https://example.com/"><div>block</div></a>', None, "block\n\n(https://example.com/)"),
    ('<p>see<a href="https://example.com/x"></a>.</p>', None, "see https://example.com/x."),
    ('<pre><code><a href="https://example.com/">verbatim</a></code></pre>', None, "verbatim"),
    ('<ul><li><a href="/help">help</a></li></ul><table><tr><td><a href="/tour">tour</a></td></tr></table>', BASE,
     "- help (https://coffee.stackexchange.com/help)\n\ntour (https://coffee.stackexchange.com/tour)"),
    ('<blockquote><a href="/a/1">quoted</a></blockquote>', BASE, "> quoted (https://coffee.stackexchange.com/a/1)"),
])
def test_links_and_images(html, base, expected):
    assert html_to_text(html, base) == expected


def test_site_base_url():
    assert site_base_url("coffee.stackexchange.com") == BASE
    assert site_base_url("stackoverflow.com") == "https://stackoverflow.com/"
    assert site_base_url("Posts") is None and site_base_url("my site") is None


def test_parse_tags():
    assert parse_tags("<storage><whole-bean>") == ["storage", "whole-bean"]
    assert parse_tags("|storage|whole-bean|") == ["storage", "whole-bean"]
    assert parse_tags(None) == [] and parse_tags("") == []


# -- damaged and rearranged inputs ------------------------------------------------------------


def test_bom_and_doctype(tmp_path, coffee):
    data = (COFFEE / "Posts.xml").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf<?xml") and b"<!DOCTYPE" not in data
    first, rest = data.split(b"\n", 1)
    with_doctype = first + b"\n<!DOCTYPE posts SYSTEM 'posts.dtd'>\n" + rest
    no_bom = data[3:]
    for name, variant in [("doctype", with_doctype), ("nobom", no_bom), ("crlf", data.replace(b"\n", b"\r\n"))]:
        stats, docs, _ = run(site_copy(tmp_path, f"{name}/coffee.stackexchange.com", variant), tmp_path, name)
        assert stats.docs_in == 592 and not stats.counters["damaged_lines"], name
        assert docs == coffee[1], name
    # history.meta's own Posts.xml starts with a BOM and a DOCTYPE line.
    assert (HISTORY / "Posts.xml").read_bytes().startswith(b"\xef\xbb\xbf<?xml")
    assert b"<!DOCTYPE posts SYSTEM 'posts.dtd'>" in (HISTORY / "Posts.xml").read_bytes()[:200]


def test_truncated(tmp_path, coffee):
    data = (COFFEE / "Posts.xml").read_bytes()
    cut = data[: len(data) // 2]
    site = site_copy(tmp_path, "coffee.stackexchange.com", cut)
    stats, docs, dropped = run(site, tmp_path)
    rows = cut.count(b"<row ")
    assert count_posts(str(site)) == rows
    assert stats.dropped["corrupt_xml"] == 1 and stats.docs_in == rows  # rows - 1 complete + the cut one
    assert stats.counters["rows"] == rows - 1
    assert stats.docs_out > 100 and [r for r in dropped if r["drop_reason"] == "corrupt_xml"]
    full = {d["id"]: d for d in coffee[1]}
    last_complete = int(re.findall(rb'<row Id="(\d+)"', cut)[-2])
    for d in docs:
        assert d["id"] in full
        answer_ids = re.findall(rb'<row Id="(\d+)" PostTypeId="2" ParentId="%d"' % d["question_id"], data)
        if all(int(a) <= last_complete for a in answer_ids):
            assert d == full[d["id"]]


def test_undecodable_and_invalid_rows(tmp_path, coffee):
    lines = lines_of(COFFEE / "Posts.xml")
    q = row_line(lines, 2)  # question 2 has two answers
    bad = list(lines)
    bad[q] = bad[q].replace(b'Body="', b'Body="\xff\xfe bad bytes ')
    a = row_line(lines, 24)  # question 1's accepted answer
    bad[a] = bad[a].replace(b'Body="', b'Body="&#x1;')
    stats, docs, dropped = run(site_copy(tmp_path, "coffee.stackexchange.com", b"\n".join(bad)), tmp_path)
    assert stats.dropped["undecodable_row"] == 1 and stats.dropped["malformed_row"] == 1
    assert stats.counters["damaged_lines"] == 2 and stats.counters["rows"] == 590 and stats.docs_in == 592
    assert "stackexchange/coffee.stackexchange.com/2" not in {d["id"] for d in docs}
    assert stats.dropped["orphan_answer"] == 2  # question 2's answers
    q1 = docs[0]
    assert q1["question_id"] == 1 and q1["answer_count"] == 2 and ", accepted)" not in q1["text"]
    assert stats.docs_out == 224 and docs[-1] == coffee[1][-1]  # reading went on to the end
    reasons = {r["drop_reason"]: r for r in dropped}
    assert "\ufffd" in reasons["undecodable_row"]["text"] and 'Id="2"' in reasons["undecodable_row"]["text"]
    assert reasons["undecodable_row"]["id"] == f"stackexchange/coffee.stackexchange.com/line-{q + 1}"
    assert reasons["malformed_row"]["id"] == f"stackexchange/coffee.stackexchange.com/line-{a + 1}"


def test_cut_row_does_not_swallow_the_next(tmp_path, coffee):
    lines = lines_of(COFFEE / "Posts.xml")
    i = row_line(lines, 9)
    bad = list(lines)
    bad[i] = bad[i][:45]  # an unterminated attribute: expat only fails on the next line
    stats, docs, _ = run(site_copy(tmp_path, "coffee.stackexchange.com", b"\n".join(bad)), tmp_path)
    assert stats.dropped["malformed_row"] == 1 and stats.docs_in == 592 and stats.counters["rows"] == 591
    assert "stackexchange/coffee.stackexchange.com/10" in {d["id"] for d in docs}  # the next row
    # The same when every line arrives in its own block.
    items = list(_RowParser().parse(iter(line + b"\n" for line in bad)))
    assert [item for kind, item in items if kind == "bad_line"] == [(i + 1, bad[i])]
    assert sum(kind == "row" for kind, _ in items) == 591


def test_answer_before_question(tmp_path, coffee):
    lines = lines_of(COFFEE / "Posts.xml")
    q = row_line(lines, 1)
    answers = [row_line(lines, a) for a in (1617, 1618)]  # the last rows of the file
    assert all(b'ParentId="1"' in lines[i] for i in answers)
    moved = [lines[i] for i in answers]
    rest = [line for i, line in enumerate(lines) if i not in answers]
    rest[q:q] = moved  # the answers now come before their question
    stats, docs, _ = run(site_copy(tmp_path, "coffee.stackexchange.com", b"\n".join(rest)), tmp_path)
    assert docs == coffee[1] and stats.docs_in == 592


def test_other_reasons(tmp_path):
    lines = lines_of(COFFEE / "Posts.xml")
    bad = list(lines)
    bad[row_line(lines, 2)] = b""  # question 2 goes: its two answers become orphans
    i = row_line(lines, 6)
    bad[i] = re.sub(rb'Body="[^"]*"', b'Body="&lt;p&gt; &lt;/p&gt;"', bad[i])  # question 6: empty body
    i = row_line(lines, 3)
    bad[i] = bad[i].replace(b'Id="3"', b'Id="three"')
    bad.insert(row_line(lines, 4), lines[row_line(lines, 1)])  # question 1 again
    stats, docs, dropped = run(site_copy(tmp_path, "coffee.stackexchange.com", b"\n".join(bad)), tmp_path)
    assert stats.dropped["orphan_answer"] >= 2 and stats.dropped["empty_body"] == 1
    assert stats.dropped["malformed_row"] == 1 and stats.dropped["duplicate_id"] == 1
    assert stats.dropped["answer_of_dropped_question"] >= 1  # question 6's answers
    ids = {d["id"] for d in docs}
    assert not ids & {f"stackexchange/coffee.stackexchange.com/{n}" for n in (2, 3, 6)}
    assert len(dropped) == sum(stats.dropped.values())
    orphans = [r for r in dropped if r["drop_reason"] == "orphan_answer"]
    assert {r["question_id"] for r in orphans} >= {2} and all(r["post_type"] == "answer" for r in orphans)


def test_unanswered_and_short(tmp_path, history):
    stats, docs, _ = run(HISTORY, tmp_path, "unanswered", keep_unanswered=False)
    assert stats.dropped["unanswered_question"] == 64 and stats.docs_out == 556 - 64
    stats, docs, dropped = run(COFFEE, tmp_path, "short", min_text_chars=2000)
    assert stats.dropped["text_too_short"] > 50
    assert stats.dropped["answer_of_dropped_question"] + stats.dropped["answer_merged_into_question"] == 327
    assert all(len(d["text"]) >= 2000 for d in docs)


# -- archives ---------------------------------------------------------------------------------


def make_7z(path: Path, posts: Path, filters=None) -> Path:
    with py7zr.SevenZipFile(path, "w", filters=filters) as archive:
        archive.writestr(b'<?xml version="1.0" encoding="utf-8"?>\n<badges>\n  <row Id="1" UserId="2" Name="Teacher" />\n</badges>\n', "Badges.xml")
        archive.write(posts, "Posts.xml")
        archive.writestr(b'<?xml version="1.0" encoding="utf-8"?>\n<users>\n</users>\n', "Users.xml")
    return path


def test_7z_archive(tmp_path, coffee):
    archive = make_7z(tmp_path / "coffee.stackexchange.com.7z", COFFEE / "Posts.xml")
    assert site_name(str(archive)) == "coffee.stackexchange.com"
    assert count_posts(str(archive)) == 592
    run(COFFEE, tmp_path, "dir")
    stats, docs, _ = run(archive, tmp_path, "7z")
    assert docs == coffee[1] and stats.docs_in == 592
    assert (tmp_path / "7z.parquet").read_bytes() == (tmp_path / "dir.parquet").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".parquet")) == [archive.name]
    # Stack Overflow's split archive.
    so = shutil.copy(archive, tmp_path / "stackoverflow.com-Posts.7z")
    stats, docs, _ = run(so, tmp_path, "so")
    assert docs[0]["id"] == "stackexchange/stackoverflow.com/1" and docs[0]["url"] == "https://stackoverflow.com/questions/1"


def test_corrupt_7z(tmp_path):
    good = make_7z(tmp_path / "good.7z", COFFEE / "Posts.xml").read_bytes()
    variants = {
        "junk": b"this is not a 7z archive",
        "empty": b"",
        "truncated": good[: len(good) // 2],  # the header sits at the end: nothing can be read
        "bad_lzma": good[:200] + bytes(b ^ 0x5A for b in good[200:400]) + good[400:],
    }
    for name, data in variants.items():
        path = tmp_path / f"{name}.stackexchange.com.7z"
        path.write_bytes(data)
        stats, docs, dropped = run(path, tmp_path, name)
        assert stats.dropped["corrupt_archive"] == 1 and stats.docs_in == stats.docs_out + sum(stats.dropped.values())
        assert [r["drop_reason"] for r in dropped if r["drop_reason"].startswith("corrupt")] == ["corrupt_archive"]
        assert count_posts(str(path)) == stats.counters["rows"]
    # Stored (uncompressed) Posts.xml with one flipped byte in a body: every row is read, then the
    # CRC check fails at the end of the member.
    stored = make_7z(tmp_path / "stored.7z", COFFEE / "Posts.xml", filters=[{"id": py7zr.FILTER_COPY}])
    data = bytearray(stored.read_bytes())
    at = data.index(b"microroasted")
    data[at] = ord("M")
    stored.write_bytes(bytes(data))
    stats, docs, _ = run(stored, tmp_path, "stored", site="coffee.stackexchange.com")
    assert stats.dropped["corrupt_archive"] == 1 and stats.counters["rows"] == 592 and stats.docs_out == 225
    assert "Microroasted" in docs[0]["text"]
    # An archive without Posts.xml.
    empty = tmp_path / "nothing.7z"
    with py7zr.SevenZipFile(empty, "w") as archive:
        archive.writestr(b"<users/>", "Users.xml")
    stats, docs, _ = run(empty, tmp_path, "nothing")
    assert stats.dropped == {"no_posts_xml": 1} and stats.docs_in == 1 and not docs and count_posts(str(empty)) == 0


# -- site selection ---------------------------------------------------------------------------


def test_count_posts_and_site_name(tmp_path):
    assert count_posts(str(HISTORY)) == 1657 == count_posts(str(HISTORY / "Posts.xml"))
    assert count_posts(str(COFFEE)) == 592
    assert site_name(str(HISTORY)) == "history.meta.stackexchange.com"
    assert site_name(str(COFFEE / "Posts.xml")) == "coffee.stackexchange.com"
    assert site_name(str(COFFEE) + "/") == "coffee.stackexchange.com"
    assert site_name("/dumps/stackoverflow.com-Posts.7z") == "stackoverflow.com"
    assert site_name("/dumps/stackoverflow.com-Posts/Posts.xml") == "stackoverflow.com"
    assert site_name("/dumps/math.stackexchange.com.7z") == "math.stackexchange.com"
    assert site_name("/data/askubuntu.com.xml") == "askubuntu.com"
    with pytest.raises(FileNotFoundError):
        count_posts(str(tmp_path / "missing.7z"))
    with pytest.raises(FileNotFoundError):
        extract_stackexchange(str(tmp_path / "missing"), str(tmp_path / "out.parquet"))


def test_select_sites():
    counts = {"b.com": 10, "a.com": 10, "c.com": 30, "d.com": 5, "e.com": 10}
    assert select_sites(counts, 2) == ["c.com", "a.com"]
    assert select_sites(counts, 3) == ["c.com", "a.com", "b.com"]
    assert select_sites(dict(reversed(list(counts.items()))), 3) == ["c.com", "a.com", "b.com"]
    assert select_sites(counts, 28) == ["c.com", "a.com", "b.com", "e.com", "d.com"]
    assert select_sites(counts, 0) == [] and select_sites({}, 28) == []
    sites = {f"site{i:02d}.com": 1000 - i for i in range(40)}
    assert select_sites(sites) == [f"site{i:02d}.com" for i in range(28)]
